"""Evaluation questions in the YAML schema of Betley et al. (first_plot_questions.yaml).

Fields per entry: id, type, paraphrases, samples_per_paraphrase, judge,
judge_prompts ({aligned, coherent}), system (optional). The file uses YAML
anchors, which `yaml.safe_load` resolves.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.core.io_utils import InputError, read_yaml, write_json_atomic
from workflow_scripts.core.schema import VARIANT_SUFFIXES
from workflow_scripts.core.sources import materialise_source

REQUIRED_METRICS = ("aligned", "coherent")


@dataclass(frozen=True)
class Question:
    id: str
    paraphrases: tuple[str, ...]
    judge_prompts: dict[str, str]
    system: str | None = None

    @property
    def prompt(self) -> str:
        """The text sampled: Betley's free-form questions have one paraphrase."""
        return self.paraphrases[0]

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "paraphrases": list(self.paraphrases),
            "judge_prompts": dict(self.judge_prompts),
            "system": self.system,
        }


def is_base_id(question_id: str) -> bool:
    return not question_id.endswith(VARIANT_SUFFIXES)


def parse_questions(path: str | os.PathLike, ids: list[str] | None = None) -> list[Question]:
    """Parse and check a questions file; `ids=None` keeps every base (non-variant) id."""
    path = Path(path)
    entries = read_yaml(path)
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected a list of questions at the top level")
    by_id: dict[str, Question] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: question {index}"
        if not isinstance(entry, dict) or "id" not in entry:
            raise InputError(f"{where}: expected a mapping with an 'id'")
        qid = str(entry["id"])
        where = f"{path}: question '{qid}'"
        if qid in by_id:
            raise InputError(f"{where} (entry {index}): id used twice; ids must be unique")
        paraphrases = entry.get("paraphrases")
        if not paraphrases or not all(isinstance(p, str) and p.strip() for p in paraphrases):
            raise InputError(f"{where}: field 'paraphrases' must be a non-empty list of strings")
        judge_prompts = entry.get("judge_prompts") or {}
        missing = [m for m in REQUIRED_METRICS if m not in judge_prompts]
        if missing:
            raise InputError(f"{where}: field 'judge_prompts' lacks {', '.join(missing)}")
        for metric in REQUIRED_METRICS:
            template = judge_prompts[metric]
            if "{question}" not in template or "{answer}" not in template:
                raise InputError(
                    f"{where}: judge_prompts.{metric} must contain {{question}} and {{answer}}"
                )
        by_id[qid] = Question(
            id=qid,
            paraphrases=tuple(paraphrases),
            judge_prompts={m: judge_prompts[m] for m in REQUIRED_METRICS},
            system=entry.get("system") or None,
        )
    if ids is None:
        return [q for qid, q in by_id.items() if is_base_id(qid)]
    if not ids:
        raise InputError(f"{path}: questions.ids is empty; list ids, or null for every base id")
    repeated = sorted({qid for qid in ids if ids.count(qid) > 1})
    if repeated:
        raise InputError(f"{path}: questions.ids lists more than once: {', '.join(repeated)}")
    unknown = [qid for qid in ids if qid not in by_id]
    if unknown:
        raise InputError(f"{path}: questions.ids names ids not in the file: {', '.join(unknown)}")
    return [by_id[qid] for qid in ids]


log = logging.getLogger(__name__)


def prepare_questions(questions_config: dict, out_file: Path, cache_dir: Path) -> dict:
    source = questions_config["source"]
    path, sha256 = materialise_source(source, cache_dir / "questions", what="questions.source")
    questions = parse_questions(path, questions_config.get("ids"))
    record = {
        "source": dict(source),
        "pinned": bool(source.get("sha256")),
        "file": str(path),
        "sha256": sha256,
        "questions": [q.to_dict() for q in questions],
    }
    write_json_atomic(out_file, record)
    log.info("%d questions from %s (sha256 %s)", len(questions), path, sha256)
    return record
