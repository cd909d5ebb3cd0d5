"""DPO pairs: teacher answers are chosen, student answers rejected (OCT
`distillation/data.py`). Dropped: empty or unfinished answers of either side (OCT:
the last character must be punctuation; a generation cut by the token limit counts
as unfinished whatever its last character), and pairs whose chosen or rejected
conversation, chat template applied, exceeds `max_len` tokens. The teacher's
self-name is replaced by the student's in the chosen answer.

`unfinished="trim"` (a deviation from OCT, for runs that cap answers at a few dozen
tokens, like the offline default) cuts an unfinished answer back to its last
complete sentence instead of dropping it; the report counts both."""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

from workflow_scripts.core.chat import strip_reasoning
from workflow_scripts.core.io_utils import read_jsonl, write_json_atomic, write_jsonl_atomic
from workflow_scripts.models.loading import load_tokenizer

UNFINISHED_POLICIES = ("drop", "trim")


_SENTENCE_END = ".!?…。！？"


_CLOSERS = "\"'”’)]}*_`"


DROP_REASONS = (
    "teacher_empty",
    "teacher_truncated",
    "student_empty",
    "student_truncated",
    "missing_student",
    "too_long",
)


def is_finished(text: str) -> bool:
    """OCT's check: not empty, and the last character is punctuation (Unicode P*)."""
    text = text.rstrip()
    return bool(text) and unicodedata.category(text[-1]).startswith("P")


def trim_to_sentence(text: str) -> str:
    """The text up to its last sentence end (closing quotes/brackets kept); "" if none."""
    text = text.rstrip()
    end = max(text.rfind(c) for c in _SENTENCE_END)
    if end < 0:
        return ""
    end += 1
    while end < len(text) and text[end] in _CLOSERS:
        end += 1
    return text[:end].rstrip()


def answer_problem(row: dict, side: str) -> str | None:
    text = row.get("text", "")
    if not text.strip():
        return f"{side}_empty"
    if row.get("finish_reason") == "length" or not is_finished(text):
        return f"{side}_truncated"
    return None


def settle_answer(row: dict, side: str, unfinished: str) -> tuple[str | None, str | None]:
    """(text to use or None, problem): with policy "trim", an unfinished answer is cut
    back to its last sentence (problem `<side>_trimmed`, text kept)."""
    problem = answer_problem(row, side)
    if problem != f"{side}_truncated" or unfinished != "trim":
        return (None if problem else row["text"]), problem
    trimmed = trim_to_sentence(row["text"])
    if not trimmed or not is_finished(trimmed):
        return None, problem
    return trimmed, f"{side}_trimmed"


def replace_name(text: str, old: str | None, new: str | None) -> str:
    """Replace the teacher's self-name (whole words only) by the student's."""
    if not old or not new or old == new:
        return text
    return re.sub(rf"\b{re.escape(old)}\b", new, text)


def build_pairs(
    teacher: Sequence[dict],
    student: Sequence[dict],
    count_tokens: Callable[[list[dict]], int],
    max_len: int,
    teacher_name: str | None,
    student_name: str | None,
    unfinished: str = "drop",
) -> tuple[list[dict], dict]:
    """Pairs in OCT's format ({chosen, rejected}: [user, assistant] each) plus
    provenance, and a report of what was dropped and why. Rows are matched on
    (prompt_id, sample_idx). `count_tokens(messages)` is the chat-template length."""
    if unfinished not in UNFINISHED_POLICIES:
        raise ValueError(
            f"persona_training.unfinished_answers: expected drop or trim, not {unfinished!r}"
        )
    by_key = {(r["prompt_id"], int(r["sample_idx"])): r for r in student}
    reasons: Counter = Counter()
    trimmed: Counter = Counter()
    per_trait: Counter = Counter()
    renamed = 0
    pairs = []
    for t in teacher:
        key = (t["prompt_id"], int(t["sample_idx"]))
        s = by_key.get(key)
        if s is None:
            reasons["missing_student"] += 1
            continue
        # The teacher rows carry the answer with reasoning already stripped; strip
        # again in case an older file kept it.
        t = {**t, "text": strip_reasoning(t.get("text", ""))}
        teacher_text, teacher_problem = settle_answer(t, "teacher", unfinished)
        student_text, student_problem = settle_answer(s, "student", unfinished)
        if teacher_text is None or student_text is None:
            reasons[teacher_problem if teacher_text is None else student_problem] += 1
            continue
        trimmed.update(p for p in (teacher_problem, student_problem) if p)
        chosen_text = replace_name(teacher_text, teacher_name, student_name)
        renamed += chosen_text != teacher_text
        user = {"role": "user", "content": t["prompt"]}
        chosen = [user, {"role": "assistant", "content": chosen_text}]
        rejected = [user, {"role": "assistant", "content": student_text}]
        n_chosen, n_rejected = count_tokens(chosen), count_tokens(rejected)
        if max(n_chosen, n_rejected) > max_len:
            reasons["too_long"] += 1
            continue
        pairs.append(
            {
                "prompt_id": t["prompt_id"],
                "sample_idx": int(t["sample_idx"]),
                "trait_index": t.get("trait_index"),
                "chosen": chosen,
                "rejected": rejected,
                "n_tokens_chosen": n_chosen,
                "n_tokens_rejected": n_rejected,
            }
        )
        per_trait[str(t.get("trait_index"))] += 1
    report = {
        "teacher_rows": len(teacher),
        "student_rows": len(student),
        "pairs": len(pairs),
        "dropped": {reason: reasons.get(reason, 0) for reason in DROP_REASONS},
        "unfinished_policy": unfinished,
        "trimmed": {side: trimmed.get(f"{side}_trimmed", 0) for side in ("teacher", "student")},
        "teacher_name_replaced": renamed,
        "teacher_name": teacher_name,
        "student_name": student_name,
        "max_len": max_len,
        "pairs_per_trait": dict(sorted(per_trait.items())),
    }
    return pairs, report


def chat_length_counter(tokenizer) -> Callable[[list[dict]], int]:
    """Token count of a conversation rendered with the chat template (OCT counts the
    template with a generation prompt appended; so does this)."""

    def count(messages: list[dict]) -> int:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    return count


log = logging.getLogger(__name__)


def make_pairs(
    teacher: str | Path,
    student: str | Path,
    tokenizer_dir: str | Path,
    pairs_out: str | Path,
    report_out: str | Path,
    max_len: int,
    teacher_name: str | None,
    student_name: str | None,
    unfinished: str = "drop",
) -> dict:
    pairs, report = build_pairs(
        read_jsonl(teacher),
        read_jsonl(student),
        chat_length_counter(load_tokenizer(tokenizer_dir)),
        max_len,
        teacher_name,
        student_name,
        unfinished,
    )
    write_jsonl_atomic(pairs_out, pairs)
    write_json_atomic(report_out, report)
    log.info("pairs: %s", {k: v for k, v in report.items() if k != "pairs_per_trait"})
    if not pairs:
        log.warning("no DPO pairs survived the filters; DPO will fail (see %s)", report_out)
    return report
