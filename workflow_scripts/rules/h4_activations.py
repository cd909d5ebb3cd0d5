"""Rule h4_activations: residual-stream activations of one persona+EM run's judged
answers, averaged over answer tokens per layer (workflow_scripts.h4.activations)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.activations import extract_run_activations


def main(smk) -> None:
    start_job(smk)
    extract_run_activations(
        Path(smk.input.model),
        Path(smk.input.adapter),
        Path(smk.input.judged),
        int(smk.wildcards.seed),
        Path(smk.output.activations),
        Path(smk.output.index),
        dict(smk.params.settings),
    )


if "snakemake" in globals():
    main(snakemake)
