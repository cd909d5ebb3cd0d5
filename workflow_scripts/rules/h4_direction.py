"""Rule h4_direction: the mean-difference EM direction of one run, per layer, with its
counts and bootstrap stability, or a recorded skip (workflow_scripts.h4.store)."""

from pathlib import Path

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.store import direction_from_activations


def main(smk) -> None:
    start_job(smk)
    wc = smk.wildcards
    direction_from_activations(
        Path(smk.input.activations),
        Path(smk.input.index),
        Path(smk.output.direction),
        Path(smk.output.summary),
        dict(smk.params.settings),
        {"model": wc.model, "persona": wc.persona, "dataset": wc.dataset, "seed": int(wc.seed)},
    )


if "snakemake" in globals():
    main(snakemake)
