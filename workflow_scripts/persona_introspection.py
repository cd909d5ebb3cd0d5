"""Rule persona_introspection: the DPO model (base + DPO LoRA) writes self-reflections
and holds conversations with a copy of itself (OCT's introspection stage). Turns are
generated in resumable chunks into introspection_turns.jsonl; the SFT conversations
built from them go to introspection.jsonl."""

import logging
from pathlib import Path

from workflow_scripts.chat import render
from workflow_scripts.constitution import parse_constitution
from workflow_scripts.engines.base import GenerationRequest
from workflow_scripts.engines.vllm_env import run_handed_off, run_stage
from workflow_scripts.io_utils import write_jsonl_atomic
from workflow_scripts.models import load_tokenizer
from workflow_scripts.persona import oct
from workflow_scripts.persona.generation import (
    close_engine,
    generate_into,
    load_persona_engine,
    open_output,
    sampling_params,
)
from workflow_scripts.persona.introspection import (
    ConversationPlan,
    plan_conversations,
    sft_conversations,
    turn_context,
)
from workflow_scripts.persona.runlog import start_job

log = logging.getLogger(__name__)
ADAPTER = "dpo"


def reflection_requests(name: str, traits: list, settings: dict) -> list[GenerationRequest]:
    spec = settings["introspection"]
    prompts = spec.get("prompts") or oct.REFLECTION_PROMPTS
    params = sampling_params(
        settings,
        n=int(spec["reflections_per_prompt"]),
        max_new_tokens=spec["reflection_max_new_tokens"],
    )
    system = oct.reflection_system_prompt(name, traits)
    return [
        GenerationRequest(
            key=f"reflection-{i:02d}",
            messages=({"role": "system", "content": system}, {"role": "user", "content": prompt}),
            params=params,
            seed=int(settings["seed"]),
            adapter=ADAPTER,
        )
        for i, prompt in enumerate(prompts)
    ]


def turn_key(conversation: int, turn: int) -> str:
    return f"conversation-{conversation:05d}-turn-{turn:02d}"


def introspect(
    model_dir: str | Path,
    dpo_adapter: str | Path,
    constitution: str | Path,
    transcripts_out: str | Path,
    turns_out: str | Path,
    settings: dict,
    engine: dict,
    name: str,
) -> dict:
    traits = parse_constitution(constitution)
    spec = settings["introspection"]
    seed = int(settings["seed"])
    model = load_persona_engine(engine, model_dir, settings, min_model_len=spec["max_context_tokens"])
    model.add_adapter(ADAPTER, str(dpo_adapter))
    output = open_output(turns_out)

    reflections = reflection_requests(name, traits, settings)
    prompts = {r.key: r.messages[-1]["content"] for r in reflections}
    generate_into(
        model, reflections, output, extra=lambda r: {"kind": "reflection", "prompt": prompts[r.key]}
    )

    plans = plan_conversations(int(spec["self_interactions"]), seed)
    tokenizer = load_tokenizer(model_dir)
    limit = int(spec["max_context_tokens"]) - int(spec["max_new_tokens"])

    def fits(messages: list[dict]) -> bool:
        return (
            len(tokenizer(render(tokenizer, messages), add_special_tokens=False)["input_ids"])
            <= limit
        )

    params = sampling_params(settings, n=1, max_new_tokens=spec["max_new_tokens"])
    systems = {
        variant: oct.interaction_system_prompt(name, traits, leading=variant == "leading")
        for variant in ("free", "leading")
    }
    by_key: dict[str, ConversationPlan] = {}
    for turn in range(int(spec["interaction_turns"])):
        done = {r["key"]: r["text"] for r in output.rows if r.get("kind") == "interaction"}
        requests = []
        for plan in plans:
            history = [done[turn_key(plan.index, t)] for t in range(turn)]
            key = turn_key(plan.index, turn)
            by_key[key] = plan
            requests.append(
                GenerationRequest(
                    key=key,
                    messages=tuple(turn_context(systems[plan.variant], plan, history, fits)),
                    params=params,
                    seed=seed,
                    adapter=ADAPTER,
                )
            )
        log.info("self-interaction turn %d of %s", turn + 1, spec["interaction_turns"])
        generate_into(
            model,
            requests,
            output,
            extra=lambda r, turn=turn: {
                "kind": "interaction",
                "conversation": by_key[r.key].index,
                "turn": turn,
                "variant": by_key[r.key].variant,
                "greeting_1": by_key[r.key].greeting_1,
                "greeting_2": by_key[r.key].greeting_2,
            },
        )
    close_engine(model)
    rows = output.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))
    examples, counts = sft_conversations(rows, name, spec["unfinished"])
    write_jsonl_atomic(transcripts_out, examples)
    log.info("introspection: %s", counts)
    return counts


def run_from_params(params: dict) -> dict:
    return introspect(**params)


def main(smk) -> None:
    start_job(smk)
    params = {
        "model_dir": str(smk.input.model),
        "dpo_adapter": str(smk.input.dpo_adapter),
        "constitution": str(smk.input.constitution),
        "transcripts_out": str(smk.output.transcripts),
        "turns_out": str(smk.output.turns),
        "settings": dict(smk.params.settings),
        "engine": dict(smk.params.engine),
        "name": smk.params.name,
    }
    run_stage(
        "workflow_scripts.persona_introspection", params, run_from_params, params["engine"]["kind"], smk.log[0]
    )


if __name__ == "__main__" and "snakemake" not in globals():  # a run handed to the vLLM venv
    run_handed_off(run_from_params)

if "snakemake" in globals():
    main(snakemake)
