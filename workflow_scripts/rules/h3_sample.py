"""Rule h3_sample: answers of every analysis checkpoint of one persona's EM runs, one
engine load of the persona model (workflow_scripts.h3.sample)."""

from typing import Any

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.h3.sample import sample_from_params


def main(smk: Any) -> None:
    from workflow_scripts.engines.vllm_env import run_stage

    start_job(smk)
    params = {
        "model_dir": smk.input.model,
        "runs": list(smk.params.runs),
        "questions_file": smk.input.questions,
        "out_file": smk.output.samples,
        "sampling": dict(smk.params.sampling),
        "model_name": smk.wildcards.model,
        "persona": smk.wildcards.persona,
        "stride": int(smk.params.stride),
        "question_ids": smk.params.question_ids,
        "gpus": job_gpus(smk),
    }
    # plain venvs: vLLM lives in its own venv (envs/README.md)
    run_stage("workflow_scripts.h3.sample", params, sample_from_params, params["sampling"]["engine"], smk.log[0])


if "snakemake" in globals():
    main(snakemake)
