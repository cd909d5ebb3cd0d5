"""Rule h4_ablate: answers of one persona+EM model, unablated and with each source
persona's EM direction projected out (workflow_scripts.h4.steering)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.run import ablate_from_files


def main(smk) -> None:
    start_job(smk)
    wc = smk.wildcards
    ablate_from_files(
        Path(smk.input.model),
        Path(smk.input.adapter),
        list(smk.input.vectors),
        list(smk.input.summaries),
        dict(smk.params.ablate),
        wc.dataset,
        int(wc.seed),
        Path(smk.input.questions),
        Path(smk.output.samples),
        dict(smk.params.sampling),
        wc.model,
        wc.persona,
    )


if "snakemake" in globals():
    main(snakemake)
