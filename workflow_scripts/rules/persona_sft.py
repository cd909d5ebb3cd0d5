"""Rule persona_sft: LoRA SFT of the DPO model (DPO LoRA merged into the base) on the
introspection transcripts, with loss on every assistant turn."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus, run_on_gpus
from workflow_scripts.persona.sft import run_sft


def main(smk) -> None:
    start_job(smk)
    # A model of several GPUs: one training process per GPU of the job (core/launch.py)
    run_on_gpus(
        run_sft,
        dict(
            model_dir=smk.input.model,
            dpo_adapter=smk.input.dpo_adapter,
            transcripts=smk.input.transcripts,
            out_dir=smk.output.adapter,
            settings=dict(smk.params.settings),
            seed=int(smk.params.seed),
        ),
        job_gpus(smk),
    )


if "snakemake" in globals():
    main(snakemake)
