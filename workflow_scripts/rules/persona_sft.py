"""Rule persona_sft: LoRA SFT of the DPO model (DPO LoRA merged into the base) on the
introspection transcripts, with loss on every assistant turn."""

from workflow_scripts.core.job import start_job
from workflow_scripts.persona.sft import run_sft


def main(smk) -> None:
    start_job(smk)
    run_sft(
        smk.input.model,
        smk.input.dpo_adapter,
        smk.input.transcripts,
        smk.output.adapter,
        smk.params.settings,
        int(smk.params.seed),
    )


if "snakemake" in globals():
    main(snakemake)
