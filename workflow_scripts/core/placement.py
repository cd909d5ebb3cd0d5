"""Where rules may run: a rule that calls a remote endpoint must not be placed where
there is no internet. Rules declare `internet=1` (rules/*.smk); a cluster profile marks
the rules it places on a partition without internet with the resource `offline: 1`
(profiles/leonardo: the GPU partition). rules/cluster.smk calls this while the
Snakefile is parsed, so a wrong placement is refused before any job, not discovered as
network timeouts hours into a run. Pure: no Snakemake, no network."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# the rules that call the configured judge (its endpoint is config judge.base_url)
JUDGING_RULES = ("judge", "persona_check", "h4_judge")
# what the other rules that declare internet=1 reach
DOWNLOADS = {
    "base_model": "the Hugging Face Hub (models with source huggingface)",
    "released_adapter": "the Hugging Face Hub (released persona adapters)",
    "em_dataset": "the EM datasets' download URLs",
    "eval_questions": "the evaluation questions' download URL",
}


@dataclass(frozen=True)
class Placement:
    rule: str
    internet: bool  # the rule declares that it calls a remote endpoint
    offline: bool  # the profile places it where there is no internet
    local: bool = False  # run by the submitting Snakemake, not as a cluster job


def remote_endpoint(rule: str, judge: Mapping) -> str:
    """What a rule that declares internet=1 calls, in words."""
    if rule in JUDGING_RULES:
        return f"the {judge.get('kind')} judge at {judge.get('base_url') or 'its default endpoint'}"
    return DOWNLOADS.get(rule, "a remote endpoint (it declares internet=1)")


def offline_remote_calls(placements: Iterable[Placement], judge: Mapping) -> list[str]:
    """One line per rule placed without internet that would call a remote endpoint."""
    return [
        f"rule {p.rule} calls {remote_endpoint(p.rule, judge)}, but the profile places it "
        "on a partition without internet (resource offline=1)"
        for p in placements
        if p.internet and p.offline and not p.local
    ]
