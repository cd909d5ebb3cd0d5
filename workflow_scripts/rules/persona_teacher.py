"""Rule persona_teacher: the teacher answers every prompt with the constitution's traits
in its system prompt; these are the chosen answers of the DPO pairs."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import engine_on_job_gpus
from workflow_scripts.persona.answers import run_answer_stage


def main(smk) -> None:
    start_job(smk)
    run_answer_stage(
        smk.log[0],
        prompts_path=str(smk.input.prompts),
        model_dir=str(smk.input.model),
        out_path=str(smk.output.answers),
        role=smk.params.role,
        settings=dict(smk.params.settings),
        engine=engine_on_job_gpus(smk),
        constitution=smk.input.get("constitution"),
        name=smk.params.get("name"),
    )


if "snakemake" in globals():
    main(snakemake)
