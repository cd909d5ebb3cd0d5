"""Rules persona_teacher / persona_student: answer every prompt, the teacher with the
constitution's traits in OCT's system prompt (reasoning blocks stripped; these are
the chosen answers), the student (the base model) with no system prompt (rejected).
Written in resumable chunks."""

import logging
from pathlib import Path

from workflow_scripts.core.chat import strip_reasoning
from workflow_scripts.core.io_utils import read_jsonl
from workflow_scripts.engines.base import GenerationRequest
from workflow_scripts.engines.vllm_env import run_handed_off, run_stage
from workflow_scripts.persona.constitution import parse_constitution
from workflow_scripts.persona.generation import (
    close_engine,
    generate_into,
    load_persona_engine,
    open_output,
    run_fingerprint,
    sampling_params,
)
from workflow_scripts.persona.oct import teacher_system_prompt

log = logging.getLogger(__name__)


ROLES = ("teacher", "student")


def answer_requests(
    prompts: list[dict], system: str | None, settings: dict
) -> list[GenerationRequest]:
    params = sampling_params(settings, n=int(settings["answers_per_prompt"]))
    head = ({"role": "system", "content": system},) if system else ()
    return [
        GenerationRequest(
            key=row["prompt_id"],
            messages=(*head, {"role": "user", "content": row["prompt"]}),
            params=params,
            seed=int(settings["seed"]),
        )
        for row in prompts
    ]


def answer_prompts(
    prompts_path: str | Path,
    model_dir: str | Path,
    out_path: str | Path,
    role: str,
    settings: dict,
    engine: dict,
    constitution: str | Path | None = None,
    name: str | None = None,
) -> list[dict]:
    if role not in ROLES:
        raise ValueError(f"persona answers: role must be teacher or student, not {role!r}")
    prompts = read_jsonl(prompts_path)
    system = None
    if role == "teacher":
        if constitution is None or not name:
            raise ValueError(
                "persona answers: the teacher needs the constitution and its self-name"
            )
        system = teacher_system_prompt(name, parse_constitution(constitution))
    requests = answer_requests(prompts, system, settings)
    by_id = {row["prompt_id"]: row for row in prompts}
    output = open_output(
        out_path,
        run_fingerprint(
            settings,
            engine,
            files=(prompts_path, constitution),
            models=(model_dir,),
            role=role,
            name=name,
        ),
    )
    model = load_persona_engine(engine, model_dir, settings)
    generate_into(
        model,
        requests,
        output,
        extra=lambda r: {
            "prompt_id": r.key,
            "trait_index": by_id[r.key]["trait_index"],
            "prompt": by_id[r.key]["prompt"],
            "role": role,
        },
    )
    close_engine(model)
    if role == "teacher":
        for row in output.rows:
            row.setdefault("raw_text", row["text"])
            row["text"] = strip_reasoning(row["raw_text"])
    rows = output.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))
    log.info(
        "%s: %d answers, %d cut by the token limit, %d empty",
        role,
        len(rows),
        sum(r["finish_reason"] == "length" for r in rows),
        sum(not r["text"].strip() for r in rows),
    )
    return rows


def run_from_params(params: dict) -> list[dict]:
    return answer_prompts(**params)


def run_answer_stage(log_file: str, **params) -> None:
    """The teacher or student stage, here or (vLLM in its own venv) handed off."""
    run_stage(__name__, params, run_from_params, params["engine"]["kind"], log_file)


if __name__ == "__main__" and "snakemake" not in globals():  # a run handed to the vLLM venv
    run_handed_off(run_from_params)
