"""What makes a judge job's table trustworthy, checked before it is written:

- the error budget: judgements the endpoint refused (API_ERROR, CONTENT_FILTERED) are
  missing scores that are not missing at random; above `judge.max_error_rate` of a
  job's judgements the job fails, naming the count of each kind;
- one judge snapshot: every judgement of a job (cached or new) and every cache file of
  the judge comes from the model id the endpoint reported; a change (a provider moving
  an alias to a new snapshot) stops the job rather than mixing two judges in one table.

Pure logic; `run.judge_samples` applies it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping

from workflow_scripts.judging.logprob import ERROR_REASONS


class ErrorBudgetExceeded(RuntimeError):
    """More of a job's judgements were refused than `judge.max_error_rate` allows."""


class JudgeModelChanged(RuntimeError):
    """The endpoint reported another model id than the judgements before it."""


def error_counts(records: Iterable[Mapping]) -> dict[str, int]:
    """Refused judgements per kind (API_ERROR, CONTENT_FILTERED), every kind listed."""
    counts = Counter(r.get("special") for r in records if "error" in r)
    return {kind: int(counts.get(kind, 0)) for kind in ERROR_REASONS}


def check_error_budget(counts: Mapping[str, int], total: int, max_rate: float, where: str) -> float:
    """The error rate of `total` judgements; ErrorBudgetExceeded above `max_rate`."""
    errors = sum(counts.values())
    rate = errors / total if total else 0.0
    if rate > max_rate:
        kinds = ", ".join(f"{kind} {n}" for kind, n in counts.items())
        raise ErrorBudgetExceeded(
            f"{where}: {errors} of {total} judgements refused by the endpoint ({kinds}): "
            f"error rate {rate:.2%} is above judge.max_error_rate {max_rate:.2%}; "
            "the judged answers are kept in the cache, the refused ones are asked again on a rerun"
        )
    return rate


class ModelPin:
    """The one model id (snapshot) the judgements of a judge come from.

    `known` are ids already on record (cached judgements, other jobs' cache files);
    more than one is already a mix. Each new id is checked with `check`."""

    def __init__(self, judge_id: str, where: str, known: Iterable[str | None] = ()):
        self.judge_id = judge_id
        self.where = where
        self.served: str | None = None
        self.source = ""
        for served in known:
            self.check(served, "the judge's cache")

    def check(self, served: str | None, source: str = "the endpoint") -> None:
        if served is None:  # local judges and endpoints that do not say
            return
        if self.served is None:
            self.served, self.source = served, source
            return
        if served != self.served:
            raise JudgeModelChanged(
                f"{self.where}: judge '{self.judge_id}' answered as model '{served}' ({source}), "
                f"but earlier judgements came from '{self.served}' ({self.source}); the provider "
                "moved the model to another snapshot. Name a dated model id in judge.model (e.g. "
                "gpt-4.1-mini-2025-04-14) or move the old judgements out of judge.cache_dir; "
                "judgements of two snapshots are never mixed"
            )
