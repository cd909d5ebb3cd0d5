"""Rule self_knowledge_score: the self-knowledge battery on one persona model, its no-EM
control and every EM adapter, one engine load (workflow_scripts.self_knowledge.score)."""

from typing import Any

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import job_gpus
from workflow_scripts.self_knowledge.score import score_persona


def main(smk: Any) -> None:
    from workflow_scripts.engines.vllm_env import run_stage

    start_job(smk)
    params = {
        "model_dir": smk.input.model,
        "items": smk.input.item_file,
        "judged": list(smk.input.judged),
        "conditions": list(smk.params.conditions),
        "settings": dict(smk.params.settings),
        "out_file": smk.output.scores,
        "model_name": smk.wildcards.model,
        "persona": smk.wildcards.persona,
        "gpus": job_gpus(smk),
    }
    # plain venvs: vLLM lives in its own venv (envs/README.md)
    run_stage("workflow_scripts.self_knowledge.score", params, score_persona, params["settings"]["engine"], smk.log[0])


if "snakemake" in globals():
    main(snakemake)
