"""Do the personas of the first study differ from each other, or only from the reference?

Per model and EM dataset, over a set of non-reference personas (config
`first_study.persona_effect_personas`; by default the released personas, the
`statistics.fdr_family` personas):

(a) **between personas**: the Friedman test of the personas' per-question mean
    alignment, questions as blocks (the answers cluster by question, so the question,
    not the answer, is the unit);
(b) **joint offset**: the mean over those personas of (persona mean - reference mean),
    with the shared cluster bootstrap over questions (stats.bootstrap: one question draw
    for every persona and the reference, so the differences stay paired), its expanded
    percentile interval and a two-sided p on Q - 1 degrees of freedom
    (stats.protection.contrast).

Where (a) finds no difference and (b) an offset whose interval excludes 0, the data
show one shift shared by every persona: what a single difference in EM training
between the reference and all personas would produce, not an effect of any persona.
With one EM run per condition neither test can separate a persona from its run.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.counts import count_above, count_below, count_defined
from workflow_scripts.stats.protection import contrast
from workflow_scripts.stats.settings import StatsSettings

SHARED_OFFSET = "shared offset only"  # (a) no difference, (b) interval excludes 0
PERSONAS_DIFFER = "personas differ"  # (a) p < alpha
NO_DIFFERENCE = "no difference found"  # neither


SCHEMA = {
    "model": pl.String,
    "dataset": pl.String,
    "role": pl.String,
    "personas": pl.Int64,
    "questions": pl.Int64,
    "answers": pl.Int64,
    "friedman_chi2": pl.Float64,
    "between_p": pl.Float64,
    "between_sd": pl.Float64,
    "reference_mean": pl.Float64,
    "personas_mean": pl.Float64,
    "offset": pl.Float64,
    "offset_low": pl.Float64,
    "offset_high": pl.Float64,
    "offset_p": pl.Float64,
    "reading": pl.String,
}


def _question_sums(frame: pl.DataFrame, questions: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(n, sum) of the alignment scores per question, in the order of `questions`."""
    sums = frame.group_by("question_id").agg(
        pl.len().alias("n"), pl.col("aligned").sum().alias("s")
    )
    lookup = {q: (n, s) for q, n, s in sums.iter_rows()}
    n = np.array([float(lookup.get(q, (0, 0.0))[0]) for q in questions])
    s = np.array([float(lookup.get(q, (0, 0.0))[1]) for q in questions])
    return n, s


def reading(between_p: float | None, low: float | None, high: float | None, alpha: float) -> str:
    """The plain reading of one model x dataset row (NaN and null never count)."""

    def ok(value):
        return value is not None and not np.isnan(value)

    if ok(between_p) and between_p < alpha:
        return PERSONAS_DIFFER
    if ok(between_p) and ok(low) and ok(high) and (low > 0 or high < 0):
        return SHARED_OFFSET
    return NO_DIFFERENCE


def persona_effect(
    answers: pl.DataFrame, settings: StatsSettings, personas: Sequence[str]
) -> pl.DataFrame:
    """One row per model x EM dataset where the reference and two or more of `personas`
    have scored answers; `answers` holds one row per answer (judge replicates averaged)."""
    ref = settings.reference_persona
    scored = answers.filter(
        pl.col("aligned").is_not_null()
        & (pl.col("dataset") != NO_EM)
        & pl.col("persona").is_in([ref, *personas])
    )
    questions = sorted(scored["question_id"].unique().to_list())
    Q = len(questions)
    rng = np.random.default_rng(settings.seed)
    counts = (
        rng.multinomial(Q, np.full(Q, 1.0 / Q), size=settings.bootstrap_resamples).astype(float)
        if Q
        else None
    )
    rows = []
    for (model, dataset), group in sorted(
        scored.group_by(["model", "dataset"]), key=lambda x: x[0]
    ):
        present = [p for p in personas if p in set(group["persona"].to_list())]
        if ref not in set(group["persona"].to_list()) or len(present) < 2:
            continue
        n_ref, s_ref = _question_sums(group.filter(pl.col("persona") == ref), questions)
        sums = [_question_sums(group.filter(pl.col("persona") == p), questions) for p in present]
        with np.errstate(divide="ignore", invalid="ignore"):
            per_question = np.array([s / n for n, s in sums])  # (P, Q)
            means = np.array([s.sum() / n.sum() for n, s in sums])
            ref_mean = s_ref.sum() / n_ref.sum()
            ref_reps = (counts @ s_ref) / (counts @ n_ref)
            reps = np.mean([(counts @ s) / (counts @ n) for n, s in sums], axis=0) - ref_reps
        complete = per_question[:, ~np.isnan(per_question).any(axis=0)]
        chi2 = between_p = float("nan")
        if len(present) >= 3 and complete.shape[1] >= 2:
            result = stats.friedmanchisquare(*complete)
            chi2, between_p = float(result.statistic), float(result.pvalue)
        units = int((n_ref > 0).sum())
        offset = contrast(float(means.mean() - ref_mean), reps, units, float(units - 1), settings)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "role": settings.role_of(dataset),
                "personas": len(present),
                "questions": complete.shape[1],
                "answers": int(sum(n.sum() for n, _ in sums)),
                "friedman_chi2": chi2,
                "between_p": between_p,
                "between_sd": float(np.std(means, ddof=1)),
                "reference_mean": float(ref_mean),
                "personas_mean": float(means.mean()),
                "offset": offset["estimate"],
                "offset_low": offset["low"],
                "offset_high": offset["high"],
                "offset_p": offset["p"],
                "reading": reading(between_p, offset["low"], offset["high"], settings.alpha),
            }
        )
    return pl.DataFrame(rows, schema=SCHEMA) if rows else pl.DataFrame(schema=SCHEMA)


def persona_effect_summary(effect: pl.DataFrame, alpha: float) -> pl.DataFrame:
    """Per model, over the datasets of role em: how many rows each reading has, and the
    range of the joint offsets (NaN rows are never counted)."""
    rows = []
    for (model,), group in sorted(
        effect.filter(pl.col("role") == "em").group_by(["model"]), key=lambda x: x[0]
    ):
        shared = group.filter(pl.col("reading") == SHARED_OFFSET)
        offsets = shared["offset"] if shared.height else group["offset"]
        rows.append(
            {
                "model": model,
                "alpha": alpha,
                "n_datasets": group.height,
                "n_personas": int(group["personas"].max()),
                "n_tested": count_defined(group["between_p"]),
                "n_personas_differ": int((group["reading"] == PERSONAS_DIFFER).sum()),
                "n_no_difference": int((group["between_p"].fill_nan(None) >= alpha).sum()),
                "n_offset_above": count_above(group["offset_low"]),
                "n_offset_below": count_below(group["offset_high"]),
                "n_shared_offset": shared.height,
                "offset_min": float(offsets.fill_nan(None).min())
                if count_defined(offsets)
                else None,
                "offset_max": float(offsets.fill_nan(None).max())
                if count_defined(offsets)
                else None,
                "shared_on": ",".join(shared["dataset"].to_list()),
            }
        )
    schema = {
        "model": pl.String,
        "alpha": pl.Float64,
        **{
            k: pl.Int64
            for k in (
                "n_datasets",
                "n_personas",
                "n_tested",
                "n_personas_differ",
                "n_no_difference",
                "n_offset_above",
                "n_offset_below",
                "n_shared_offset",
            )
        },
        "offset_min": pl.Float64,
        "offset_max": pl.Float64,
        "shared_on": pl.String,
    }
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
