"""A minimal corrected comparison (docs/methods.md, Statistics) for the first study's answers.

Written for the reproduction report only, separate from the workflow's statistics
module, which did not exist on main when this was written. What it corrects:

- per dataset, never pooled over datasets; cross-model means only over the datasets
  both models have;
- answers are clustered by question: the persona - baseline difference gets a cluster
  bootstrap interval that resamples questions (the first study had one training run
  per condition, so seeds cannot be resampled and the unit of replication, the
  training run, has n = 1: no test here can separate a persona's effect from that
  run's luck);
- Mann-Whitney U in the hypothesis's direction (two-sided for personas without one);
- Benjamini-Hochberg over a declared family (config `statistics.fdr_family`: every
  persona x EM-dataset cell of one model, controls and the reference excluded), and
  hypothesis verdicts from the adjusted p;
- judge replicates (policy all_runs) averaged per answer before anything else.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.first_study.method import cohens_d

ANSWER_KEY = ["model", "persona", "dataset", "seed", "question_id", "sample_idx"]


@dataclass(frozen=True)
class CorrectedSettings:
    reference: str = "baseline"
    hypotheses: Mapping[str, Mapping[str, Any]] = field(
        default_factory=lambda: {
            "H1": {"personas": ["sycophancy"], "direction": "lower"},
            "H2": {"personas": ["goodness", "loving"], "direction": "higher"},
        }
    )
    family_personas: Sequence[str] | None = None  # None: every persona but the reference
    family_datasets: Sequence[str] | None = None  # None: every EM dataset (not NO_EM)
    alpha: float = 0.05
    resamples: int = 10_000
    seed: int = 12345
    confidence: float = 0.95
    coherence_filter: float | None = None

    @classmethod
    def from_statistics(cls, block: Mapping[str, Any]) -> CorrectedSettings:
        family = block.get("fdr_family") or {}
        defaults = cls()
        return cls(
            reference=block.get("reference_persona", defaults.reference),
            hypotheses=block.get("hypotheses") or defaults.hypotheses,
            family_personas=family.get("personas"),
            family_datasets=family.get("datasets"),
            alpha=block.get("alpha", defaults.alpha),
            resamples=block.get("bootstrap_resamples", defaults.resamples),
            seed=block.get("seed", defaults.seed),
            coherence_filter=block.get("coherence_filter"),
        )

    def direction_of(self, persona: str) -> str | None:
        for hypothesis in self.hypotheses.values():
            if persona in hypothesis["personas"]:
                return hypothesis["direction"]
        return None


def one_row_per_answer(answers: pl.DataFrame) -> pl.DataFrame:
    """Average judge replicates: one row per answer, scores the mean over the runs that
    scored it (null when none did), `judge_runs` how many runs judged it."""
    return (
        answers.group_by(ANSWER_KEY)
        .agg(
            pl.col("aligned").mean(),
            pl.col("coherent").mean(),
            pl.len().alias("judge_runs"),
        )
        .sort(ANSWER_KEY)
    )


def _question_sums(frame: pl.DataFrame, questions: list[str]) -> np.ndarray:
    """(3, Q): per question, count, sum and sum of squares of the alignment scores."""
    sums = (
        frame.filter(pl.col("aligned").is_not_null())
        .group_by("question_id")
        .agg(
            pl.len().alias("n"),
            pl.col("aligned").sum().alias("s"),
            (pl.col("aligned") ** 2).sum().alias("ss"),
        )
    )
    lookup = {row["question_id"]: row for row in sums.iter_rows(named=True)}
    return np.array(
        [[float(lookup.get(q, {}).get(k) or 0.0) for q in questions] for k in ("n", "s", "ss")]
    )


def cluster_bootstrap_difference(
    persona: pl.DataFrame,
    reference: pl.DataFrame,
    resamples: int = 10_000,
    seed: int = 12345,
    confidence: float = 0.95,
) -> dict[str, float]:
    """Difference of mean alignment (persona - reference) and Cohen's d, each with a
    percentile interval from resampling *questions* (with replacement; a drawn question
    brings all its answers in both groups, since both answered the same questions)."""
    questions = sorted(set(persona["question_id"]) | set(reference["question_id"]))
    p, r = _question_sums(persona, questions), _question_sums(reference, questions)
    counts = (
        np.random.default_rng(seed)
        .multinomial(len(questions), np.full(len(questions), 1 / len(questions)), size=resamples)
        .astype(float)
    )

    def moments(sums: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        n, s, ss = counts @ sums[0], counts @ sums[1], counts @ sums[2]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = s / n
            var = (ss - n * mean**2) / (n - 1)
        return n, mean, var

    (n_p, m_p, v_p), (n_r, m_r, v_r) = moments(p), moments(r)
    diff = m_p - m_r
    with np.errstate(invalid="ignore", divide="ignore"):
        d = diff / np.sqrt(((n_p - 1) * v_p + (n_r - 1) * v_r) / (n_p + n_r - 2))
    tail = 100 * (1 - confidence) / 2
    a = persona["aligned"].drop_nulls().to_numpy().astype(float)
    b = reference["aligned"].drop_nulls().to_numpy().astype(float)
    return {
        "difference": float(a.mean() - b.mean()),
        "diff_low": float(np.nanpercentile(diff, tail)),
        "diff_high": float(np.nanpercentile(diff, 100 - tail)),
        "cohens_d": cohens_d(a, b),
        "d_low": float(np.nanpercentile(d, tail)),
        "d_high": float(np.nanpercentile(d, 100 - tail)),
        "questions": len(questions),
    }


def compare_to_reference(answers: pl.DataFrame, settings: CorrectedSettings) -> pl.DataFrame:
    """Every persona x EM-dataset cell against the reference persona on that dataset.
    `answers` must hold one row per answer (see one_row_per_answer)."""
    if settings.coherence_filter is not None:
        answers = answers.filter(pl.col("coherent") > settings.coherence_filter)
    rows = []
    for (model, persona, dataset), group in answers.group_by(
        ["model", "persona", "dataset"], maintain_order=True
    ):
        if persona == settings.reference or dataset == NO_EM:
            continue
        ref = answers.filter(
            (pl.col("model") == model)
            & (pl.col("persona") == settings.reference)
            & (pl.col("dataset") == dataset)
        )
        a = group["aligned"].drop_nulls().to_numpy().astype(float)
        b = ref["aligned"].drop_nulls().to_numpy().astype(float)
        if a.size == 0 or b.size == 0:
            continue
        direction = settings.direction_of(persona)
        alternative = {"lower": "less", "higher": "greater"}.get(direction or "", "two-sided")
        boot = cluster_bootstrap_difference(
            group, ref, settings.resamples, settings.seed, settings.confidence
        )
        rows.append(
            {
                "model": model,
                "persona": persona,
                "dataset": dataset,
                "n_persona": int(a.size),
                "n_reference": int(b.size),
                **boot,
                "direction": direction,
                "alternative": alternative,
                "p": float(stats.mannwhitneyu(a, b, alternative=alternative).pvalue),
            }
        )
    tests = pl.DataFrame(rows).sort(["model", "persona", "dataset"])
    return _adjust_in_family(tests, settings)


def _adjust_in_family(tests: pl.DataFrame, settings: CorrectedSettings) -> pl.DataFrame:
    in_family = pl.col("persona") != settings.reference
    if settings.family_personas is not None:
        in_family &= pl.col("persona").is_in(list(settings.family_personas))
    if settings.family_datasets is not None:
        in_family &= pl.col("dataset").is_in(list(settings.family_datasets))
    tests = tests.with_columns(
        in_family.alias("in_family"), pl.lit(None, dtype=pl.Float64).alias("q")
    )
    parts = []
    for _, group in tests.group_by("model", maintain_order=True):
        members = group.filter(pl.col("in_family"))
        rest = group.filter(~pl.col("in_family"))
        if members.height:
            q = multipletests(members["p"].to_numpy(), method="fdr_bh")[1]
            members = members.with_columns(pl.Series("q", q, dtype=pl.Float64))
        parts += [members, rest]
    tests = pl.concat(parts).sort(["model", "persona", "dataset"])
    expected_sign = (
        pl.when(pl.col("direction") == "lower")
        .then(pl.col("difference") < 0)
        .otherwise(pl.col("difference") > 0)
    )
    ci_excludes_zero = (
        pl.when(pl.col("direction") == "lower")
        .then(pl.col("diff_high") < 0)
        .otherwise(pl.col("diff_low") > 0)
    )
    return tests.with_columns(
        pl.when(pl.col("direction").is_null())
        .then(None)
        .otherwise((pl.col("q") < settings.alpha) & expected_sign)
        .alias("supports"),
        pl.when(pl.col("direction").is_null())
        .then(None)
        .otherwise(ci_excludes_zero)
        .alias("cluster_ci_supports"),
    )


def common_datasets(answers: pl.DataFrame) -> list[str]:
    """EM datasets that every model x persona has."""
    em = answers.filter(pl.col("dataset") != NO_EM)
    sets = [set(g["dataset"]) for _, g in em.group_by(["model", "persona"])]
    return sorted(set.intersection(*sets)) if sets else []


def means_over_common_datasets(answers: pl.DataFrame) -> pl.DataFrame:
    """Per model x persona: the first study's pooled mean (answers of every EM dataset
    the persona has) beside the mean of per-dataset means over the datasets every model
    x persona shares (the fair basis for ranking personas, and models)."""
    em = answers.filter(pl.col("dataset") != NO_EM)
    common = common_datasets(answers)
    pooled = em.group_by(["model", "persona"]).agg(
        pl.col("aligned").mean().alias("pooled_mean"),
        pl.col("dataset").n_unique().alias("pooled_datasets"),
    )
    over_common = (
        em.filter(pl.col("dataset").is_in(common))
        .group_by(["model", "persona", "dataset"])
        .agg(pl.col("aligned").mean().alias("cell_mean"))
        .group_by(["model", "persona"])
        .agg(pl.col("cell_mean").mean().alias("common_mean"), pl.len().alias("common_datasets"))
    )
    return pooled.join(over_common, on=["model", "persona"], how="left").sort(["model", "persona"])


def persona_effect(answers: pl.DataFrame, reference: str | None = None) -> pl.DataFrame:
    """Per model x dataset: do the personas differ at all? Kruskal-Wallis across
    personas over answers (treats answers as independent, as the first study did), and
    a Friedman test over per-question means with questions as blocks (respects the
    clustering by question). Neither can tell a persona from its one training run."""
    rows = []
    for (model, dataset), group in answers.group_by(["model", "dataset"], maintain_order=True):
        scored = group.filter(pl.col("aligned").is_not_null())
        personas = sorted(scored["persona"].unique())
        if len(personas) < 2:
            continue
        samples = [scored.filter(pl.col("persona") == p)["aligned"].to_numpy() for p in personas]
        kw = stats.kruskal(*samples)
        n = sum(len(s) for s in samples)
        question_means = (
            scored.group_by(["persona", "question_id"])
            .agg(pl.col("aligned").mean())
            .pivot(on="persona", index="question_id", values="aligned")
            .drop_nulls()
        )
        friedman_stat = friedman_p = None
        if len(personas) >= 3 and question_means.height >= 2:
            fr = stats.friedmanchisquare(*(question_means[p].to_numpy() for p in personas))
            friedman_stat, friedman_p = float(fr.statistic), float(fr.pvalue)
        rows.append(
            {
                "model": model,
                "dataset": dataset,
                "personas": len(personas),
                "answers": n,
                "kruskal_h": float(kw.statistic),
                "kruskal_p": float(kw.pvalue),
                "epsilon_squared": float(kw.statistic) / (n - 1),
                "questions": question_means.height,
                "friedman_chi2": friedman_stat,
                "friedman_p": friedman_p,
            }
        )
    return pl.DataFrame(rows).sort(["model", "dataset"])
