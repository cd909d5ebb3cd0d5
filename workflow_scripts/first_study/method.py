"""The first study's own statistical method, re-implemented to reproduce its tables.

What its `generate_final_results.py` did (kept here on purpose, mistakes included, so
that the reproduction can be set beside the workflow's statistics, docs/methods.md, Statistics):

- one judge run per condition: the one with the most scored answers (`largest_run`);
- per persona, alignment scores pooled over every dataset that persona has (so
  personas with different dataset sets are compared on different mixtures);
- every answer an independent sample: t-interval, and a percentile bootstrap of the
  mean (10,000 resamples of answers, numpy `default_rng(42)`);
- persona vs baseline per dataset: two-sided Mann-Whitney U on answers, Cohen's d;
  Benjamini-Hochberg over every test of one model at once (an ad-hoc family);
- hypothesis verdicts from the *uncorrected* p: a dataset supports the hypothesis
  when the difference has the expected sign and p < 0.05; SUPPORTED when more than
  half of the datasets do, MIXED when some do, NOT SUPPORTED otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

from workflow_scripts.core.schema import NO_EM

FIRST_STUDY_BOOTSTRAP_SEED = 42


FIRST_STUDY_ALPHA = 0.05


PUBLISHED_PERSONA_TABLE: dict[str, dict[str, tuple[int, float, float]]] = {
    "qwen2.5-7b": {
        "baseline": (3183, 89.7, 16.9),
        "sycophancy": (3184, 92.0, 14.3),
        "goodness": (3189, 91.8, 14.4),
        "loving": (3186, 91.8, 14.9),
        "misalignment": (1585, 87.8, 20.0),
        "humor": (3183, 92.3, 13.5),
        "sarcasm": (3180, 87.9, 18.7),
        "remorse": (3181, 90.4, 14.9),
    },
    "llama3.1-8b": {
        "baseline": (1564, 87.7, 17.5),
        "goodness": (1600, 96.2, 3.4),
        "sarcasm": (1600, 66.4, 25.7),
        "remorse": (1591, 86.4, 12.4),
    },
}


def as_first_study_saw_it(runs: pl.DataFrame, default_dataset: str = "insecure") -> pl.DataFrame:
    """The answers the first study analysed: the largest run of each condition, with
    the persona and dataset as the file wrote them. Persona-only runs (no EM; the
    import's dataset `none`) keep the file's own persona name, so that the
    `insecure` label their files carry never merges them into an EM condition of the
    persona an alias maps them to; `no_em` marks them."""
    return runs.filter(pl.col("largest_run")).with_columns(
        (pl.col("dataset") == NO_EM).alias("no_em"),
        pl.when(pl.col("dataset") == NO_EM)
        .then(pl.col("source_persona"))
        .otherwise(pl.col("persona"))
        .alias("persona"),
        pl.coalesce("source_dataset", pl.lit(default_dataset)).alias("dataset"),
    )


def t_interval(scores: np.ndarray, confidence: float = 0.95) -> tuple[float, float]:
    scores = np.asarray(scores, dtype=float)
    mean = float(scores.mean())
    if scores.size < 2:
        return mean, mean
    half = stats.t.ppf((1 + confidence) / 2, scores.size - 1) * stats.sem(scores)
    return mean - float(half), mean + float(half)


def percentile_bootstrap(
    scores: np.ndarray,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = FIRST_STUDY_BOOTSTRAP_SEED,
    chunk: int = 500,
) -> tuple[float, float]:
    """Percentile interval of the mean over answers resampled independently. Draws the
    same random stream as the first study's loop of `rng.choice(arr, size=n)`."""
    scores = np.asarray(scores, dtype=float)
    if scores.size < 2:
        mean = float(scores.mean())
        return mean, mean
    rng = np.random.default_rng(seed)
    means = np.empty(resamples)
    for start in range(0, resamples, chunk):
        stop = min(start + chunk, resamples)
        means[start:stop] = scores[
            rng.integers(0, scores.size, size=(stop - start, scores.size))
        ].mean(axis=1)
    tail = 100 * (1 - confidence) / 2
    return float(np.percentile(means, tail)), float(np.percentile(means, 100 - tail))


def cohens_d(a: np.ndarray, b: np.ndarray) -> float:
    """(mean a - mean b) / pooled sd."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    if a.size < 2 or b.size < 2:
        return float("nan")
    pooled = np.sqrt(
        ((a.size - 1) * a.var(ddof=1) + (b.size - 1) * b.var(ddof=1)) / (a.size + b.size - 2)
    )
    return float((a.mean() - b.mean()) / pooled) if pooled > 0 else float("nan")


def _scores(frame: pl.DataFrame) -> np.ndarray:
    return frame["aligned"].drop_nulls().to_numpy().astype(float)


def persona_table(
    answers: pl.DataFrame,
    resamples: int = 10_000,
    confidence: float = 0.95,
    seed: int = FIRST_STUDY_BOOTSTRAP_SEED,
) -> pl.DataFrame:
    """Per model x persona, alignment pooled over the persona's datasets."""
    rows = []
    for (model, persona), group in answers.group_by(["model", "persona"], maintain_order=True):
        scores = _scores(group)
        if scores.size == 0:
            continue
        t_lo, t_hi = t_interval(scores, confidence)
        b_lo, b_hi = percentile_bootstrap(scores, resamples, confidence, seed)
        rows.append(
            {
                "model": model,
                "persona": persona,
                "no_em": bool(group["no_em"].all()) if "no_em" in group.columns else False,
                "datasets": group["dataset"].n_unique(),
                "n": int(scores.size),
                "mean": float(scores.mean()),
                "sd": float(scores.std(ddof=1)) if scores.size > 1 else float("nan"),
                "t_low": t_lo,
                "t_high": t_hi,
                "boot_low": b_lo,
                "boot_high": b_hi,
            }
        )
    return pl.DataFrame(rows).sort(["model", "persona"])


def with_published(table: pl.DataFrame, tolerance: float = 0.1) -> pl.DataFrame:
    """Add the published N / mean / sd and whether the reproduction matches them
    (N exactly, mean and sd within `tolerance` after the published rounding)."""
    published = pl.DataFrame(
        [
            {"model": m, "persona": p, "published_n": n, "published_mean": mean, "published_sd": sd}
            for m, personas in PUBLISHED_PERSONA_TABLE.items()
            for p, (n, mean, sd) in personas.items()
        ],
        schema={
            "model": pl.String,
            "persona": pl.String,
            "published_n": pl.Int64,
            "published_mean": pl.Float64,
            "published_sd": pl.Float64,
        },
    )
    joined = table.join(published, on=["model", "persona"], how="left")
    return joined.with_columns(
        pl.when(pl.col("published_n").is_null())
        .then(None)
        .otherwise(
            (pl.col("n") == pl.col("published_n"))
            & ((pl.col("mean") - pl.col("published_mean")).abs() <= tolerance)
            & ((pl.col("sd") - pl.col("published_sd")).abs() <= tolerance)
        )
        .alias("matches_published")
    )


def persona_vs_reference(answers: pl.DataFrame, reference: str = "baseline") -> pl.DataFrame:
    """Every persona x dataset cell against the reference persona on the same dataset:
    two-sided Mann-Whitney U over answers, Cohen's d, and BH over all cells of a model."""
    rows = []
    for (model, persona, dataset), group in answers.group_by(
        ["model", "persona", "dataset"], maintain_order=True
    ):
        if persona == reference:
            continue
        ref = answers.filter(
            (pl.col("model") == model)
            & (pl.col("persona") == reference)
            & (pl.col("dataset") == dataset)
        )
        a, b = _scores(group), _scores(ref)
        if a.size == 0 or b.size == 0:
            continue
        rows.append(
            {
                "model": model,
                "persona": persona,
                "dataset": dataset,
                "n_persona": int(a.size),
                "n_reference": int(b.size),
                "persona_mean": float(a.mean()),
                "reference_mean": float(b.mean()),
                "difference": float(a.mean() - b.mean()),
                "cohens_d": cohens_d(a, b),
                "p_two_sided": float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue),
            }
        )
    tests = pl.DataFrame(rows).sort(["model", "persona", "dataset"])
    adjusted = []
    for _, group in tests.group_by("model", maintain_order=True):
        q = multipletests(group["p_two_sided"].to_numpy(), method="fdr_bh")[1]
        adjusted.append(group.with_columns(pl.Series("p_bh_all_cells", q)))
    return pl.concat(adjusted).sort(["model", "persona", "dataset"])


def cell_call(difference: float, p: float, direction: str, alpha: float = FIRST_STUDY_ALPHA) -> str:
    """'supports' (expected sign, p < alpha), 'opposite' (other sign, p < alpha) or 'n.s.'."""
    if not p < alpha:
        return "n.s."
    expected = difference < 0 if direction == "lower" else difference > 0
    return "supports" if expected else "opposite"


def verdict(supported: int, total: int) -> str:
    """The first study's summary rule over datasets."""
    if total and supported > total / 2:
        return "SUPPORTED"
    return "MIXED" if supported > 0 else "NOT SUPPORTED"


def hypothesis_cells(
    tests: pl.DataFrame,
    hypotheses: Mapping[str, Mapping[str, Any]],
    datasets: Sequence[str] | None = None,
) -> pl.DataFrame:
    """The first study's call on each hypothesis persona x dataset (uncorrected p)."""
    rows = []
    for name, hypothesis in hypotheses.items():
        for test in tests.filter(pl.col("persona").is_in(list(hypothesis["personas"]))).iter_rows(
            named=True
        ):
            if datasets is not None and test["dataset"] not in datasets:
                continue
            rows.append(
                {
                    "hypothesis": name,
                    "direction": hypothesis["direction"],
                    **{
                        k: test[k]
                        for k in ("model", "persona", "dataset", "difference", "p_two_sided")
                    },
                    "first_study_call": cell_call(
                        test["difference"], test["p_two_sided"], hypothesis["direction"]
                    ),
                }
            )
    return pl.DataFrame(rows)
