"""The battery's items (resources/self_knowledge/items.yaml), validated at parse time:
ids unique across the file, every description pair complete and matched in length,
every prompt template with its fields."""

from __future__ import annotations

import os
import string
from dataclasses import dataclass

from workflow_scripts.core.io_utils import InputError, read_yaml

KEYS = ("aligned", "misaligned")  # self_assessment `keyed`: which end 100 stands for
MAX_LENGTH_RATIO = 1.25  # a pair's longer description has at most 25% more words
TEMPLATE_FIELDS = {
    "choice": {"A", "B"},
    "recognition": {"question", "A", "B"},
    "prediction": {"question", "answer"},
}


@dataclass(frozen=True)
class SelfAssessment:
    id: str
    keyed: str  # "aligned": 100 = aligned; "misaligned": 100 = misaligned
    prompt: str

    def misalignment(self, score: float) -> float:
        """Self-reported misalignment 0..100 from the item's 0..100 answer."""
        return 100.0 - score if self.keyed == "aligned" else score


@dataclass(frozen=True)
class DescriptionPair:
    id: str
    aligned: str
    misaligned: str


@dataclass(frozen=True)
class Items:
    version: int
    self_assessment: tuple[SelfAssessment, ...]
    description_pairs: tuple[DescriptionPair, ...]
    prompts: dict[str, str]  # choice | recognition | prediction -> template

    def select(self, self_assessment: list[str] | None, description_pairs: list[str] | None, where: str) -> Items:
        """The items a config selects by id (None: all), in the file's order."""
        return Items(
            self.version,
            _select(self.self_assessment, self_assessment, f"{where}.self_assessment"),
            _select(self.description_pairs, description_pairs, f"{where}.description_pairs"),
            self.prompts,
        )


def _select(items: tuple, ids: list[str] | None, where: str) -> tuple:
    if ids is None:
        return items
    known = {item.id for item in items}
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise InputError(f"{where}: unknown item id(s) {', '.join(unknown)}; expected some of {', '.join(sorted(known))}")
    chosen = set(ids)
    return tuple(item for item in items if item.id in chosen)


def _text(entry: dict, key: str, where: str) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value.strip():
        raise InputError(f"{where}.{key}: expected a non-empty string; found {value!r}")
    return value.strip()


def _entries(data: dict, key: str, path: str) -> list[dict]:
    entries = data.get(key)
    if not isinstance(entries, list) or not entries:
        raise InputError(f"{path}: {key}: expected a non-empty list; found {type(entries).__name__}")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict):
            raise InputError(f"{path}: {key}[{i}]: expected a mapping; found {type(entry).__name__}")
    return entries


def _fields(names: set[str]) -> str:
    return ", ".join("{" + name + "}" for name in sorted(names))


def template_fields(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def parse_items(path: str | os.PathLike) -> Items:
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected a mapping with self_assessment, description_pairs and prompts")
    seen: dict[str, str] = {}

    def unique(item_id: str, where: str) -> str:
        if item_id in seen:
            raise InputError(f"{path}: {where}.id: '{item_id}' is used twice (first at {seen[item_id]}); ids must be unique")
        seen[item_id] = where
        return item_id

    assessments = []
    for i, entry in enumerate(_entries(data, "self_assessment", str(path))):
        where = f"self_assessment[{i}]"
        keyed = entry.get("keyed")
        if keyed not in KEYS:
            raise InputError(f"{path}: {where}.keyed: expected one of {', '.join(KEYS)}; found {keyed!r}")
        assessments.append(
            SelfAssessment(unique(_text(entry, "id", f"{path}: {where}"), where), keyed, _text(entry, "prompt", f"{path}: {where}"))
        )
    pairs = []
    for i, entry in enumerate(_entries(data, "description_pairs", str(path))):
        where = f"description_pairs[{i}]"
        item_id = unique(_text(entry, "id", f"{path}: {where}"), where)
        aligned = _text(entry, "aligned", f"{path}: {where} ({item_id})")
        misaligned = _text(entry, "misaligned", f"{path}: {where} ({item_id})")
        short, long = sorted((len(aligned.split()), len(misaligned.split())))
        if long > MAX_LENGTH_RATIO * short:
            raise InputError(
                f"{path}: {where} ({item_id}): descriptions of {short} and {long} words; a pair must be "
                f"matched in length (at most {MAX_LENGTH_RATIO:g} times as many words)"
            )
        pairs.append(DescriptionPair(item_id, aligned, misaligned))
    prompts = data.get("prompts")
    if not isinstance(prompts, dict):
        raise InputError(f"{path}: prompts: expected a mapping with {', '.join(TEMPLATE_FIELDS)}")
    templates = {}
    for name, fields in TEMPLATE_FIELDS.items():
        template = _text(prompts, name, f"{path}: prompts")
        found = template_fields(template)
        if found != fields:
            raise InputError(
                f"{path}: prompts.{name}: expected the fields {_fields(fields)}; found {_fields(found) or 'none'}"
            )
        templates[name] = template
    version = data.get("version")
    if not isinstance(version, int):
        raise InputError(f"{path}: version: expected an integer; found {version!r}")
    return Items(version, tuple(assessments), tuple(pairs), templates)
