"""What a judge job has to judge: one task per (metric, question, answer), keyed by
content, so identical answers (and reruns) share one judgement.

The question shown to the judge is the user message the model answered: the
question's first paraphrase (Betley's free-form questions have one). The judge
prompt is the question's template for the metric with `{question}` and `{answer}`
filled in (other braces in the template are left alone).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.hashing import text_hash
from workflow_scripts.core.io_utils import InputError, read_json

METRICS = ("aligned", "coherent")
CACHE_KEY_VERSION = "judge-cache-v1"
_PLACEHOLDER = re.compile(r"\{(question|answer)\}")


@dataclass(frozen=True)
class JudgeQuestion:
    id: str
    text: str  # the user message that was answered (paraphrases[0])
    templates: Mapping[str, str]  # metric -> judge prompt template


@dataclass(frozen=True)
class JudgeTask:
    key: str  # content hash: judge, method, metric, template, question, answer
    metric: str
    question_id: str
    prompt: str  # the filled judge prompt, sent as the only user message


def fill_template(template: str, question: str, answer: str) -> str:
    """One pass over the template, so braces inside the question or answer stay as written."""
    values = {"question": question, "answer": answer}
    return _PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def template_hash(template: str) -> str:
    return text_hash(template)[:16]


def task_key(judge_id: str, method: str, metric: str, template: str, question: str, answer: str) -> str:
    return text_hash(CACHE_KEY_VERSION, judge_id, method, metric, template_hash(template), question, answer)


def load_questions(path: str | os.PathLike) -> dict[str, JudgeQuestion]:
    """Questions by id from results/eval/questions.json (written by eval_questions)."""
    path = Path(path)
    record = read_json(path)
    entries = record.get("questions") if isinstance(record, dict) else None
    if not isinstance(entries, list):
        raise InputError(f"{path}: expected an object with a 'questions' list")
    questions: dict[str, JudgeQuestion] = {}
    for index, entry in enumerate(entries):
        where = f"{path}: questions[{index}]"
        try:
            qid = str(entry["id"])
            text = entry["paraphrases"][0]
            templates = {m: entry["judge_prompts"][m] for m in METRICS}
        except (KeyError, IndexError, TypeError) as err:
            raise InputError(f"{where}: expected id, paraphrases[0] and judge_prompts.{{aligned,coherent}}; missing {err}") from None
        questions[qid] = JudgeQuestion(qid, text, templates)
    return questions


def build_tasks(
    rows: Iterable[Mapping],
    questions: Mapping[str, JudgeQuestion],
    judge_id: str,
    method: str,
    where: str = "samples",
) -> tuple[list[JudgeTask], list[dict[str, str]]]:
    """Unique tasks (first-seen order) and, per row, the task key of each metric."""
    unique: dict[str, JudgeTask] = {}
    row_keys: list[dict[str, str]] = []
    for index, row in enumerate(rows):
        qid = row["question_id"]
        question = questions.get(qid)
        if question is None:
            raise InputError(f"{where}: row {index}: question_id '{qid}' is not in the questions file")
        answer = row["response"] or ""
        keys = {}
        for metric in METRICS:
            template = question.templates[metric]
            key = task_key(judge_id, method, metric, template, question.text, answer)
            if key not in unique:
                prompt = fill_template(template, question.text, answer)
                unique[key] = JudgeTask(key, metric, qid, prompt)
            keys[metric] = key
        row_keys.append(keys)
    return list(unique.values()), row_keys


def judgement_record(task: JudgeTask, judge_id: str, method: str, **outcome: Any) -> dict:
    """One cache record: which judgement (key, judge, method, metric, question) and its
    outcome (`dist`, `reply`, `usage`, `cost_usd`, `attempts`, or `special` and `error`)."""
    return {
        "key": task.key,
        "judge": judge_id,
        "method": method,
        "metric": task.metric,
        "question_id": task.question_id,
        **outcome,
        "time": time.time(),
    }
