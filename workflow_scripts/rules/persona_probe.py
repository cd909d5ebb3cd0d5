"""Rule persona_probe: per model, on its GPU: the next-token divergence of every persona
model from the base model on fixed probe prompts, and every model's answers to neutral
prompts (judged by rule persona_check, where the judge is reachable)."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.persona.check import run_probe


def main(smk) -> None:
    start_job(smk)
    personas = list(smk.params.personas)
    run_probe(
        smk.wildcards.model,
        smk.input.base,
        dict(zip(personas, smk.input.personas, strict=True)),
        smk.params.settings,
        smk.output.probes,
        gpus=job_gpus(smk),  # a model of several GPUs is split across them
    )


if "snakemake" in globals():
    main(snakemake)
