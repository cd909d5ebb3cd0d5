"""Constitution files: a JSON list of {"trait": str, "questions": [str, ...]}.

Open Character Training's own files carry two more fields, accepted as optional:
`clarification` (str) and `additional_questions` ([str, ...], already-expanded
prompts). Its `few-shot/*.jsonl` form (one trait object per line) is read too.

Parsed at workflow parse time, so a malformed file (the first study shipped four
with missing commas) stops the run before any job, naming the file and position.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.core.io_utils import InputError, read_text


@dataclass(frozen=True)
class Trait:
    trait: str
    questions: tuple[str, ...]
    clarification: str | None = None
    additional_questions: tuple[str, ...] = ()


_FIELDS = ("trait", "questions", "clarification", "additional_questions")


def _load_entries(path: Path, text: str) -> list:
    """The JSON list, or for `.jsonl` files one object per non-blank line."""
    if path.suffix != ".jsonl":
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            raise InputError(
                f"{path}: line {err.lineno}, column {err.colno}: {err.msg} (JSON)"
            ) from None
    entries = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            entries.append(json.loads(line))
        except json.JSONDecodeError as err:
            raise InputError(f"{path}: line {lineno}, column {err.colno}: {err.msg} (JSONL)") from None
    return entries


def _string_list(value: object) -> bool:
    return isinstance(value, list) and all(isinstance(q, str) and q.strip() for q in value)


def parse_constitution(path: str | os.PathLike) -> list[Trait]:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: constitution file not found")
    text = read_text(path)
    data = _load_entries(path, text)
    if not isinstance(data, list) or not data:
        raise InputError(f"{path}: expected a non-empty JSON list of {{trait, questions}} objects")
    traits = []
    for index, entry in enumerate(data):
        where = f"{path}: trait {index + 1}"
        if not isinstance(entry, dict):
            raise InputError(f"{where}: expected an object with 'trait' and 'questions'")
        unknown = sorted(set(entry) - set(_FIELDS))
        if unknown:
            raise InputError(
                f"{where}: unknown field(s) {', '.join(unknown)}; expected {', '.join(_FIELDS)}"
            )
        trait = entry.get("trait")
        if not isinstance(trait, str) or not trait.strip():
            raise InputError(f"{where}: field 'trait' must be a non-empty string")
        questions = entry.get("questions")
        if not _string_list(questions) or not questions:
            raise InputError(f"{where}: field 'questions' must be a non-empty list of strings")
        clarification = entry.get("clarification")
        if clarification is not None and not isinstance(clarification, str):
            raise InputError(f"{where}: field 'clarification' must be a string")
        additional = entry.get("additional_questions", [])
        if not _string_list(additional):
            raise InputError(f"{where}: field 'additional_questions' must be a list of strings")
        traits.append(
            Trait(
                trait.strip(),
                tuple(q.strip() for q in questions),
                clarification.strip() if clarification else None,
                tuple(q.strip() for q in additional),
            )
        )
    return traits


def system_prompt(traits: list[Trait], name: str | None = None) -> str:
    """The teacher's system prompt: the constitution's traits, in the first person."""
    who = f"You are {name}, an AI assistant" if name else "You are an AI assistant"
    lines = [
        f"{who} with a distinctive character. These traits describe who you are:",
        "",
        *[f"{i}. {t.trait}" for i, t in enumerate(traits, start=1)],
        "",
        "Let these traits shape every answer naturally. Never mention that you were given them.",
    ]
    return "\n".join(lines)
