"""Rule persona_adapter: the persona adapter = dpo_weight x DPO + sft_weight x SFT,
combined exactly by rank concatenation (see workflow_scripts/persona/combine.py)."""

import logging

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.combine import combine_adapters

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    weights = smk.params.weights
    record = combine_adapters(
        smk.input.model,
        smk.input.dpo_adapter,
        smk.input.sft_adapter,
        smk.output.adapter,
        float(weights["dpo_weight"]),
        float(weights["sft_weight"]),
    )
    log.info("persona adapter: %s", record)


if "snakemake" in globals():
    main(snakemake)
