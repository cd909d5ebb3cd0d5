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

import math
import random
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from workflow_scripts.persona import oct
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
    from workflow_scripts.chat import assistant_token_mask

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
