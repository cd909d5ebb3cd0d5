"""Rule persona_dpo: LoRA DPO of the base model on the persona pairs."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus, run_on_gpus
from workflow_scripts.persona.dpo import run_dpo


def main(smk) -> None:
    start_job(smk)
    # A model of several GPUs: one training process per GPU of the job (core/launch.py)
    run_on_gpus(
        run_dpo,
        dict(
            model_dir=smk.input.model,
            pairs=smk.input.pairs,
            out_dir=smk.output.adapter,
            settings=dict(smk.params.settings),
            seed=int(smk.params.seed),
        ),
        job_gpus(smk),
    )


if "snakemake" in globals():
    main(snakemake)
