"""Rule sample_persona: answers to the evaluation questions from one persona model,
for the no-EM control and every EM adapter of that persona, with one engine load.

Rows are written in chunks to a resumable partial file; a killed job resumes where
it stopped and the final Parquet equals an uninterrupted run's.
"""

from typing import Any

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.sampling.sample import sample_from_params


def main(smk: Any) -> None:
    from workflow_scripts.engines.vllm_env import run_stage

    start_job(smk)
    params = {
        "model_dir": smk.input.model,
        "conditions": list(smk.params.conditions),
        "questions_file": smk.input.questions,
        "out_file": smk.output.samples,
        "sampling": dict(smk.params.sampling),
        "model_name": smk.wildcards.model,
        "persona": smk.wildcards.persona,
        "gpus": job_gpus(smk),  # the model's gpus: vLLM tensor parallelism over them
    }
    # plain venvs: vLLM lives in its own venv (envs/README.md)
    run_stage(
        "workflow_scripts.sampling.sample",
        params,
        sample_from_params,
        params["sampling"]["engine"],
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
