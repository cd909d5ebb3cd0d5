"""Rule persona_prompts: expand each trait's seed questions into user messages with
the generator model (written in resumable chunks), drop near-duplicates, write
prompts.jsonl and a report of the counts."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import engine_on_job_gpus
from workflow_scripts.engines.vllm_env import run_stage
from workflow_scripts.persona.prompts import run_from_params


def main(smk) -> None:
    start_job(smk)
    params = {
        "constitution": str(smk.input.constitution),
        "generator_dir": str(smk.input.generator),
        "prompts_out": str(smk.output.prompts),
        "generations_out": str(smk.output.generations),
        "report_out": str(smk.output.report),
        "settings": dict(smk.params.settings),
        "engine": engine_on_job_gpus(smk),
        "extra_prompts": smk.input.get("extra_prompts"),
    }
    run_stage(
        "workflow_scripts.persona.prompts",
        params,
        run_from_params,
        params["engine"]["kind"],
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
