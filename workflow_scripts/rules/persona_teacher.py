"""Rules persona_teacher / persona_student: answer every prompt, the teacher with the
constitution's traits in OCT's system prompt (reasoning blocks stripped; these are
the chosen answers), the student (the base model) with no system prompt (rejected).
Written in resumable chunks."""

from workflow_scripts.core.job import start_job
from workflow_scripts.engines.vllm_env import run_stage
from workflow_scripts.persona.answers import run_from_params


def main(smk) -> None:
    start_job(smk)
    params = {
        "prompts_path": str(smk.input.prompts),
        "model_dir": str(smk.input.model),
        "out_path": str(smk.output.answers),
        "role": smk.params.role,
        "settings": dict(smk.params.settings),
        "engine": dict(smk.params.engine),
        "constitution": smk.input.get("constitution"),
        "name": smk.params.get("name"),
    }
    run_stage(
        "workflow_scripts.persona.answers",
        params,
        run_from_params,
        params["engine"]["kind"],
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
