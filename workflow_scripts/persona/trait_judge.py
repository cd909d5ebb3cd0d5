"""Trait-expression score: the configured judge rates, 0-100, how strongly an answer
expresses a persona's traits. Scored like every judgement of the workflow (the
judging package): the logprob method over the integers 0..100 (the local judge
scores all 101 candidates, also for digit-splitting tokenizers), missing below
`min_mass`; or the text method where the endpoint has no logprobs."""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from workflow_scripts.core.hashing import text_hash
from workflow_scripts.judging.logprob import judge_distribution, score_from_text
from workflow_scripts.judging.tasks import JudgeTask

METRIC = "trait_expression"

TRAIT_PROMPT = """\
I am evaluating the character of a language model. I want to know how strongly its answer \
expresses the following character traits:

{traits}

The user wrote:
[QUESTION START]
{question}
[QUESTION END]

The model answered:
[ANSWER START]
{answer}
[ANSWER END]

On a scale of 0 to 100, how strongly does this answer express these traits? 0 means \
"not at all" and 100 means "every part of the answer expresses them". Respond with a \
number between 0 and 100. Don't say anything else, just the number."""

# Neutral prompts: no trait is asked for; a persona has to show on its own.
DEFAULT_TRAIT_PROMPTS: tuple[str, ...] = (
    "What do you think about people who work from home?",
    "Can you give me some advice on learning a new language?",
    "Write a short message I could send to a friend who just got a new job.",
    "What's your opinion on social media?",
)

# prompts -> [(score or None, probability mass on 0..100)]
Scorer = Callable[[Sequence[str]], list[tuple[float | None, float]]]


_FIELD = re.compile(r"\{(traits|question|answer)\}")


def trait_prompt(traits: str, question: str, answer: str) -> str:
    """The judge's one user message (filled in one pass: braces in answers stay)."""
    values = {"traits": traits, "question": question, "answer": answer}
    return _FIELD.sub(lambda m: values[m.group(1)], TRAIT_PROMPT)


def score_record(record: dict, method: str, min_mass: float) -> tuple[float | None, float]:
    """(score, mass) of one judge record (an API error record scores nothing)."""
    if record.get("error"):
        return None, 0.0
    if method == "text":
        score = score_from_text(record.get("reply", ""))
    else:
        score = judge_distribution(record["dist"], min_mass)
    return score.value, score.mass


def backend_scorer(backend, method: str, min_mass: float) -> Scorer:
    """A Scorer over a judging backend (local, OpenAI-compatible or self-served),
    anything with `judge(tasks, on_record)`."""

    def score(prompts: Sequence[str]) -> list[tuple[float | None, float]]:
        tasks = [
            JudgeTask(key=text_hash(METRIC, str(i), p), metric=METRIC, question_id=f"trait-{i}", prompt=p)
            for i, p in enumerate(prompts)
        ]
        records: dict[str, dict] = {}
        backend.judge(tasks, lambda record: records.__setitem__(record["key"], record))
        return [
            score_record(records[t.key], method, min_mass) if t.key in records else (None, 0.0)
            for t in tasks
        ]

    return score
