"""Rule persona_introspection: the DPO model (base + DPO LoRA) writes self-reflections
and holds conversations with a copy of itself (OCT's introspection stage). Turns are
generated in resumable chunks into introspection_turns.jsonl; the SFT conversations
built from them go to introspection.jsonl."""

from workflow_scripts.core.job import start_job
from workflow_scripts.core.launch import engine_on_job_gpus
from workflow_scripts.engines.vllm_env import run_stage
from workflow_scripts.persona.introspection import run_from_params


def main(smk) -> None:
    start_job(smk)
    params = {
        "model_dir": str(smk.input.model),
        "dpo_adapter": str(smk.input.dpo_adapter),
        "constitution": str(smk.input.constitution),
        "transcripts_out": str(smk.output.transcripts),
        "turns_out": str(smk.output.turns),
        "settings": dict(smk.params.settings),
        "engine": engine_on_job_gpus(smk),
        "name": smk.params.name,
    }
    run_stage(
        "workflow_scripts.persona.introspection",
        params,
        run_from_params,
        params["engine"]["kind"],
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
