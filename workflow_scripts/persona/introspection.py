"""Introspection data (OCT `introspection/self_reflection.py`, `self_interaction.py`,
`data.py`): the DPO model reflects on itself and talks with a copy of itself; the
transcripts become SFT examples trained on every assistant turn.

Self-interaction, as in OCT: two instances A and B of the DPO model. A is greeted
with `greeting_1`; B is greeted with `greeting_2` and has answered `greeting_1`.
Turn t is written by A for even t, by B for odd t, and each instance sees its own
turns as `assistant` and the other's as `user`.

SFT examples, differing from OCT where noted:
- reflection: [user: prompt, assistant: answer], no system prompt (as OCT);
- interaction: the whole conversation from the perspective of the instance that
  spoke last, so it ENDS on an assistant turn. OCT stores the context of the last
  turn's prompt, which ends on a user turn: its last generated turn is never trained
  on. System prompt: OCT's short self-interaction prompt, with {NAME} filled in.
"""

from __future__ import annotations

import logging
import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.core.chat import render
from workflow_scripts.core.io_utils import write_jsonl_atomic
from workflow_scripts.engines.base import GenerationRequest
from workflow_scripts.engines.vllm_env import run_handed_off
from workflow_scripts.models.loading import load_tokenizer
from workflow_scripts.persona import oct
from workflow_scripts.persona.constitution import parse_constitution
from workflow_scripts.persona.generation import (
    close_engine,
    generate_into,
    load_persona_engine,
    open_output,
    run_fingerprint,
    sampling_params,
)
from workflow_scripts.persona.pairs import trim_to_sentence

UNFINISHED_POLICIES = ("keep", "drop", "trim")


@dataclass(frozen=True)
class ConversationPlan:
    index: int
    variant: str  # "free" | "leading" (OCT runs both, N each)
    greeting_1: str
    greeting_2: str


def plan_conversations(n: int, seed: int) -> list[ConversationPlan]:
    """`n` conversations: the first half free, the rest leading (OCT's `--leading`
    run), greetings drawn per conversation from a seeded generator."""
    n_free = math.ceil(n / 2)
    plans = []
    for c in range(n):
        leading = c >= n_free
        rng = random.Random(f"{seed}:conversation:{c}")
        greeting_1 = rng.choice(oct.LEADING_GREETINGS if leading else oct.GREETINGS)
        greeting_2 = rng.choice(oct.GREETINGS)
        plans.append(ConversationPlan(c, "leading" if leading else "free", greeting_1, greeting_2))
    return plans


def perspective_messages(
    system: str | None, plan: ConversationPlan, turns: Sequence[str], speaker: int
) -> list[dict]:
    """The conversation as instance `speaker` (0 = A, 1 = B) sees it: its own turns
    are `assistant`, the other's `user`."""
    messages = [{"role": "system", "content": system}] if system else []
    if speaker == 0:
        messages.append({"role": "user", "content": plan.greeting_1})
    else:
        messages.append({"role": "user", "content": plan.greeting_2})
        messages.append({"role": "assistant", "content": plan.greeting_1})
    for t, text in enumerate(turns):
        messages.append({"role": "assistant" if t % 2 == speaker else "user", "content": text})
    return messages


def turn_context(
    system: str,
    plan: ConversationPlan,
    turns: Sequence[str],
    fits: Callable[[list[dict]], bool] | None = None,
) -> list[dict]:
    """Prompt of the next turn (index len(turns)), ending on the other's turn. When
    it does not `fit` the context, the oldest pairs of turns are dropped (OCT cuts
    the oldest tokens instead)."""
    speaker = len(turns) % 2
    start = 0
    messages = perspective_messages(system, plan, turns, speaker)
    while fits is not None and not fits(messages) and len(turns) - start > 2:
        start += 2
        # Dropping two turns keeps every later turn's role (its parity is unchanged).
        messages = perspective_messages(system, plan, turns[start:], speaker)
    return messages


def settle_text(row: dict, unfinished: str) -> str | None:
    """The text to train on, or None: empty text is never used; text cut by the
    token limit is kept, dropped, or trimmed to its last sentence, per `unfinished`."""
    text = row.get("text", "").strip()
    if not text:
        return None
    if row.get("finish_reason") != "length" or unfinished == "keep":
        return text
    if unfinished == "drop":
        return None
    return trim_to_sentence(text) or None


def sft_conversations(
    rows: Sequence[dict], name: str, unfinished: str = "drop"
) -> tuple[list[dict], dict]:
    """SFT examples ({kind, key, messages}) from introspection rows, and counts.

    Interaction turns are kept up to the first unusable one (see `settle_text`); a
    conversation with no usable turn is dropped."""
    if unfinished not in UNFINISHED_POLICIES:
        raise ValueError(
            f"introspection.unfinished: expected keep, drop or trim, not {unfinished!r}"
        )
    examples: list[dict] = []
    counts = {
        "reflections": 0,
        "reflections_dropped": 0,
        "interactions": 0,
        "interactions_dropped": 0,
        "interaction_turns_kept": 0,
        "interaction_turns_dropped": 0,
    }
    turns_by_conversation: dict[int, list[dict]] = defaultdict(list)
    for row in rows:
        if row["kind"] == "reflection":
            text = settle_text(row, unfinished)
            if text is None:
                counts["reflections_dropped"] += 1
                continue
            examples.append(
                {
                    "kind": "reflection",
                    "key": f"{row['key']}#{row['sample_idx']}",
                    "messages": [
                        {"role": "user", "content": row["prompt"]},
                        {"role": "assistant", "content": text},
                    ],
                }
            )
            counts["reflections"] += 1
        elif row["kind"] == "interaction":
            turns_by_conversation[int(row["conversation"])].append(row)
    system = oct.sft_interaction_system_prompt(name)
    for c in sorted(turns_by_conversation):
        turn_rows = sorted(turns_by_conversation[c], key=lambda r: int(r["turn"]))
        first = turn_rows[0]
        plan = ConversationPlan(c, first["variant"], first["greeting_1"], first["greeting_2"])
        kept: list[str] = []
        for expected, row in enumerate(turn_rows):
            text = settle_text(row, unfinished)
            if int(row["turn"]) != expected or text is None:
                break
            kept.append(text)
        counts["interaction_turns_dropped"] += len(turn_rows) - len(kept)
        if not kept:
            counts["interactions_dropped"] += 1
            continue
        counts["interactions"] += 1
        counts["interaction_turns_kept"] += len(kept)
        speaker = (len(kept) - 1) % 2
        examples.append(
            {
                "kind": "interaction",
                "key": f"conversation-{c:05d}",
                "variant": plan.variant,
                "messages": perspective_messages(system, plan, kept, speaker),
            }
        )
    return examples, counts


def tokenize_example(tokenizer, messages: list[dict], max_len: int) -> dict:
    """input_ids and labels (-100 outside assistant turns) of one SFT example, cut to
    `max_len` tokens (the start is kept), with how many assistant turns survive."""
    from workflow_scripts.core.chat import assistant_token_mask

    ids, mask = assistant_token_mask(tokenizer, messages)
    labels = [t if m else -100 for t, m in zip(ids, mask, strict=True)]
    n_assistant = sum(m["role"] == "assistant" for m in messages)
    truncated = len(ids) > max_len
    ids, labels = ids[:max_len], labels[:max_len]
    return {
        "input_ids": ids,
        "labels": labels,
        "n_assistant_turns": n_assistant,
        "truncated": truncated,
    }


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
    model = load_persona_engine(
        engine, model_dir, settings, min_model_len=spec["max_context_tokens"]
    )
    model.add_adapter(ADAPTER, str(dpo_adapter))
    output = open_output(
        turns_out,
        run_fingerprint(
            settings,
            engine,
            files=(constitution,),
            models=(model_dir,),
            adapters=(dpo_adapter,),
            name=name,
        ),
    )

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


if __name__ == "__main__" and "snakemake" not in globals():  # a run handed to the vLLM venv
    run_handed_off(run_from_params)
