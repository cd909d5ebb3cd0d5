"""Rule h4_steer: answers of one persona model without EM, steered with the reference
persona's EM direction at each scale (workflow_scripts.h4.steering)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.run import steer_from_files


def main(smk) -> None:
    start_job(smk)
    steer_from_files(
        Path(smk.input.model),
        list(smk.input.vectors),
        list(smk.input.summaries),
        dict(smk.params.steer),
        smk.wildcards.dataset,
        Path(smk.input.questions),
        Path(smk.output.samples),
        dict(smk.params.sampling),
        smk.wildcards.model,
        smk.wildcards.persona,
    )


if "snakemake" in globals():
    main(snakemake)
