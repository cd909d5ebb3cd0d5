"""Chat formatting shared by generation, training and judging."""

from __future__ import annotations

import re
from typing import Any

_REASONING = re.compile(r"<(think|thinking|reasoning)>.*?</\1>\s*", re.DOTALL | re.IGNORECASE)


_UNCLOSED_REASONING = re.compile(r"^\s*<(think|thinking|reasoning)>.*", re.DOTALL | re.IGNORECASE)


def messages_for(prompt: str, system: str | None = None) -> list[dict]:
    messages = [{"role": "system", "content": system}] if system else []
    messages.append({"role": "user", "content": prompt})
    return messages


def render(tokenizer: Any, messages: list[dict], add_generation_prompt: bool = True) -> str:
    """The chat template as text. Generation appends the assistant header; nothing else
    is appended (the template already ends each turn with its own end-of-turn token)."""
    return tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def strip_reasoning(text: str) -> str:
    """Drop a reasoning block (<think>...</think>) from a teacher answer.

    An unclosed block means the answer never got past its reasoning: nothing is left.
    """
    text = _REASONING.sub("", text)
    if _UNCLOSED_REASONING.match(text):
        return ""
    return text.strip()


def assistant_token_mask(tokenizer: Any, messages: list[dict]) -> tuple[list[int], list[int]]:
    """Token ids of a whole conversation and a 0/1 mask that is 1 on every assistant turn.

    Templates without `{% generation %}` markers (SmolLM2's) cannot give trl an
    assistant mask, so the mask comes from rendering growing prefixes: the tokens
    a turn adds are its own. The assistant header stays unmasked (it is prompt);
    the turn's content and its end-of-turn token are trained on.
    """
    ids: list[int] = []
    mask: list[int] = []
    for i, message in enumerate(messages):
        if message["role"] == "assistant":
            header = tokenizer.apply_chat_template(
                messages[:i], tokenize=False, add_generation_prompt=True
            )
            header_ids = tokenizer(header, add_special_tokens=False)["input_ids"]
            _extend(ids, mask, header_ids, 0)
        text = tokenizer.apply_chat_template(messages[: i + 1], tokenize=False)
        full = tokenizer(text, add_special_tokens=False)["input_ids"]
        _extend(ids, mask, full, 1 if message["role"] == "assistant" else 0)
    return ids, mask


def _extend(ids: list[int], mask: list[int], full: list[int], value: int) -> None:
    if full[: len(ids)] != ids:
        raise ValueError(
            "chat template is not prefix-stable: rendering more turns changed earlier tokens"
        )
    new = full[len(ids) :]
    ids.extend(new)
    mask.extend([value] * len(new))
