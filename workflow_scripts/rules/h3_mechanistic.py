"""Rule h3_mechanistic: the mechanistic curves of one EM run from its analysis
checkpoints (workflow_scripts.h3.mechanistic)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h3.mechanistic import mechanistic_from_files


def main(smk) -> None:
    start_job(smk)
    mechanistic_from_files(
        Path(smk.input.analysis),
        Path(smk.input.adapter),
        int(smk.params.stride),
        Path(smk.output.curves),
        Path(smk.output.summary),
    )


if "snakemake" in globals():
    main(snakemake)
