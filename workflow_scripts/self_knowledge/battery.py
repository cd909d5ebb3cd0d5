"""The battery's scoring requests for one condition (a persona model, with or without
an EM adapter), built from the items and the judged answers. Pure: no I/O.

Every two-option item is asked in both orders (the misaligned option as A, then as
B), so that a model's preference for a position cancels (measures.counterbalanced).
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from workflow_scripts.core.chat import messages_for
from workflow_scripts.engines.base import CHOICE, NUMBER, ScoringRequest
from workflow_scripts.self_knowledge.items import Items

LETTERS = ("A", "B")
SELF_ASSESSMENT = "self_assessment"
DESCRIPTION_CHOICE = "description_choice"
RECOGNITION = "recognition"
PREDICTION = "prediction"
MEASURES = (SELF_ASSESSMENT, DESCRIPTION_CHOICE, RECOGNITION, PREDICTION)


@dataclass(frozen=True)
class BatteryCondition:
    dataset: str
    seed: int
    adapter_name: str | None  # the EM adapter as added to the engine; None: no EM


@dataclass(frozen=True)
class BatteryItem:
    request: ScoringRequest
    measure: str
    item_id: str
    position: str  # "" for numbers; the misaligned option's letter for choices
    question_id: str | None = None
    sample_idx: int | None = None
    judged_aligned: float | None = None  # prediction: the judge's score of the answer
    partner: str | None = None  # recognition: the other condition, "dataset/s{seed}"


def _key(condition: BatteryCondition, *parts: object) -> str:
    return "/".join([condition.dataset, f"s{condition.seed}", *map(str, parts)])


def _choice(condition, measure, item_id, text_for, misaligned_at, **meta) -> BatteryItem:
    key = _key(condition, measure, item_id, misaligned_at)
    request = ScoringRequest(key, tuple(messages_for(text_for(misaligned_at))), CHOICE, LETTERS, condition.adapter_name)
    return BatteryItem(request, measure, item_id, misaligned_at, **meta)


def self_assessment_items(items: Items, condition: BatteryCondition) -> list[BatteryItem]:
    return [
        BatteryItem(
            ScoringRequest(_key(condition, SELF_ASSESSMENT, a.id), tuple(messages_for(a.prompt)), NUMBER, (), condition.adapter_name),
            SELF_ASSESSMENT,
            a.id,
            "",
        )
        for a in items.self_assessment
    ]


def ordered(misaligned: str, aligned: str, misaligned_at: str) -> dict[str, str]:
    return {"A": misaligned, "B": aligned} if misaligned_at == "A" else {"A": aligned, "B": misaligned}


def description_items(items: Items, condition: BatteryCondition) -> list[BatteryItem]:
    template = items.prompts["choice"]
    return [
        _choice(
            condition,
            DESCRIPTION_CHOICE,
            pair.id,
            lambda at, pair=pair: template.format(**ordered(pair.misaligned, pair.aligned, at)),
            at,
        )
        for pair in items.description_pairs
        for at in LETTERS
    ]


def _first_answers(answers: pl.DataFrame, per_question: int) -> pl.DataFrame:
    """The first `per_question` answers of each question that the judge scored."""
    return (
        answers.filter(pl.col("aligned").is_not_null())
        .sort("question_id", "sample_idx")
        .group_by("question_id", maintain_order=True)
        .head(per_question)
    )


def recognition_items(
    items: Items, condition: BatteryCondition, own: pl.DataFrame, partners: dict[str, pl.DataFrame], per_question: int
) -> list[BatteryItem]:
    """The model's own answer beside a partner condition's answer to the same question
    (same sample index); the misaligned one is the one the judge scored lower. Pairs
    the judge scored equal say nothing about which is misaligned and are left out."""
    template = items.prompts["recognition"]
    result = []
    mine = _first_answers(own, per_question)
    for partner, theirs in partners.items():
        joined = mine.join(
            theirs.filter(pl.col("aligned").is_not_null()).select("question_id", "sample_idx", "aligned", "response"),
            on=["question_id", "sample_idx"],
            suffix="_partner",
        )
        for row in joined.iter_rows(named=True):
            if row["aligned"] == row["aligned_partner"]:
                continue
            own_lower = row["aligned"] < row["aligned_partner"]
            misaligned, aligned = (
                (row["response"], row["response_partner"]) if own_lower else (row["response_partner"], row["response"])
            )
            item_id = f"{row['question_id']}#{row['sample_idx']}@{partner}"
            for at in LETTERS:
                result.append(
                    _choice(
                        condition,
                        RECOGNITION,
                        item_id,
                        lambda at, m=misaligned, a=aligned, q=row["prompt"]: template.format(question=q, **ordered(m, a, at)),
                        at,
                        question_id=row["question_id"],
                        sample_idx=row["sample_idx"],
                        judged_aligned=row["aligned"],
                        partner=partner,
                    )
                )
    return result


def prediction_items(items: Items, condition: BatteryCondition, own: pl.DataFrame, per_question: int) -> list[BatteryItem]:
    template = items.prompts["prediction"]
    result = []
    for row in _first_answers(own, per_question).iter_rows(named=True):
        item_id = f"{row['question_id']}#{row['sample_idx']}"
        prompt = template.format(question=row["prompt"], answer=row["response"])
        request = ScoringRequest(
            _key(condition, PREDICTION, item_id), tuple(messages_for(prompt)), NUMBER, (), condition.adapter_name
        )
        result.append(
            BatteryItem(request, PREDICTION, item_id, "", row["question_id"], row["sample_idx"], row["aligned"])
        )
    return result


def partners_of(condition: BatteryCondition, conditions: list[BatteryCondition]) -> list[BatteryCondition]:
    """Whose answers a condition's own are shown beside: an EM condition's, its persona's
    no-EM control; the control's, every EM condition of its persona."""
    if condition.adapter_name is None:
        return [c for c in conditions if c.adapter_name is not None]
    return [c for c in conditions if c.adapter_name is None]


def condition_label(condition: BatteryCondition) -> str:
    return f"{condition.dataset}/s{condition.seed}"


def battery_items(
    items: Items,
    conditions: list[BatteryCondition],
    answers: dict[tuple[str, int], pl.DataFrame],
    per_question: int,
) -> list[BatteryItem]:
    """Every request of one persona model: per condition, self-assessment, description
    choice, recognition (where a partner's answers exist) and score prediction."""
    result = []
    for condition in conditions:
        own = answers.get((condition.dataset, condition.seed))
        result += self_assessment_items(items, condition)
        result += description_items(items, condition)
        if own is None or per_question == 0:
            continue
        partners = {
            condition_label(p): answers[(p.dataset, p.seed)]
            for p in partners_of(condition, conditions)
            if (p.dataset, p.seed) in answers
        }
        result += recognition_items(items, condition, own, partners, per_question)
        result += prediction_items(items, condition, own, per_question)
    keys = [b.request.key for b in result]
    if len(set(keys)) != len(keys):
        raise ValueError("self-knowledge battery: two requests share a key")
    return result
