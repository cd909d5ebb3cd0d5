"""Rule persona_check: per model, is each persona there? KL of the persona model's
next-token distribution from the base model's on fixed probe prompts, and a
trait-expression score (the configured judge) of answers to neutral prompts,
persona vs base. Flagged personas are warned about loudly; the workflow continues."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.persona.check import run_check


def main(smk) -> None:
    start_job(smk)
    personas = list(smk.params.personas)
    run_check(
        smk.wildcards.model,
        smk.input.base,
        dict(zip(personas, smk.input.personas, strict=True)),
        smk.params.traits,
        smk.params.settings,
        smk.params.judge,
        smk.input.get("judge_model"),
        smk.output.table,
        smk.output.answers,
        smk.log[0],
        gpus=job_gpus(smk),  # a model of several GPUs is split across them
    )


if "snakemake" in globals():
    main(snakemake)
