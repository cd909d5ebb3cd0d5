"""Rule persona_dpo: LoRA DPO of the base model on the persona pairs."""

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.dpo import run_dpo


def main(smk) -> None:
    start_job(smk)
    run_dpo(
        smk.input.model,
        smk.input.pairs,
        smk.output.adapter,
        smk.params.settings,
        int(smk.params.seed),
    )


if "snakemake" in globals():
    main(snakemake)
