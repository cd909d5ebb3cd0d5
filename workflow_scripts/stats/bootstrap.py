"""Cluster bootstrap of judged answers, with the training run as the unit.

The data are answers nested in cells (training run x question); a training run is
(model, persona, dataset, seed) and a condition is (model, persona, dataset).
One bootstrap replicate:

1. draws the questions with replacement, once, and uses that draw for every
   condition of every model (the questions are the same everywhere, so differences
   between conditions stay paired by question);
2. for a condition trained with several seeds, first draws its seeds with
   replacement (independently per condition: runs are not shared);
3. keeps the answers of each drawn cell as they are (Davison & Hinkley 1997, section
   3.8, strategy 1: resampling answers inside a drawn question as well counts the
   within-question variance twice).

A replicate is thus a weight per cell, W[b, cell] = K[b, question] x M[b, condition, seed],
and every statistic is a weighted sum of per-cell sums: one matrix product for all
conditions at once. Quantiles (P5) use the cumulative weight of the sorted answers,
again one matrix product per group. Numpy only; no per-replicate Python loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import polars as pl
from scipy import stats

CONDITION = ("model", "persona", "dataset")


def tail_column(threshold: float) -> str:
    return f"below_{threshold:g}"


@dataclass
class Design:
    """Per-cell sums of the statistics, as a dense (condition, seed, question, stat) array."""

    conditions: pl.DataFrame  # c, model, persona, dataset, n_seeds, n_questions
    questions: list[str]
    stat_columns: list[str]
    cells: np.ndarray  # (C, S_max, Q, k) sums; zero where a cell has no answers
    n_seeds: np.ndarray  # (C,)
    values: list[np.ndarray]  # per condition: its scored alignment values
    value_cells: list[np.ndarray]  # per condition: flat cell index s * Q + q of each value

    @property
    def n_conditions(self) -> int:
        return self.cells.shape[0]

    def column(self, name: str) -> int:
        return self.stat_columns.index(name)

    @cached_property
    def _index(self) -> dict[tuple[str, str, str], int]:
        return {(m, p, d): c for c, m, p, d in self.conditions.select(["c", *CONDITION]).iter_rows()}

    def index_of(self, model: str, persona: str, dataset: str) -> int | None:
        return self._index.get((model, persona, dataset))

    def units(self, rows: Sequence[int]) -> int:
        """Number of top-level resampled units of a group: seeds where every member
        has several, else questions (the smallest over the group)."""
        counts = [
            int(self.n_seeds[c]) if self.n_seeds[c] > 1 else int(self.conditions["n_questions"][c])
            for c in rows
        ]
        return min(counts) if counts else 0


def build_design(
    scored: pl.DataFrame,
    flagged: pl.DataFrame,
    thresholds: Sequence[float],
    order: pl.DataFrame | None = None,
) -> Design:
    """`scored`: answers with an alignment score (after any coherence filter);
    `flagged`: answers with the `misaligned` flag (null where a score is missing) and
    `coherent_answer` (core.misalignment.with_misaligned).
    `order`: the conditions in display order (columns model, persona, dataset); by
    default sorted by name."""
    keys = ["model", "persona", "dataset", "seed", "question_id"]
    alignment = scored.group_by(keys).agg(
        pl.len().cast(pl.Float64).alias("n"),
        pl.col("aligned").sum().alias("sum"),
        (pl.col("aligned") ** 2).sum().alias("sumsq"),
        *[(pl.col("aligned") < t).sum().cast(pl.Float64).alias(tail_column(t)) for t in thresholds],
    )
    misaligned = flagged.group_by(keys).agg(
        pl.col("misaligned").is_not_null().sum().cast(pl.Float64).alias("n_both"),
        pl.col("misaligned").fill_null(False).sum().cast(pl.Float64).alias("n_misaligned"),
        pl.col("coherent_answer").fill_null(False).sum().cast(pl.Float64).alias("n_coherent"),
    )
    stat_columns = [
        "n", "sum", "sumsq", *[tail_column(t) for t in thresholds], "n_both", "n_misaligned", "n_coherent",
    ]
    summary = alignment.join(misaligned, on=keys, how="full", coalesce=True).with_columns(
        pl.col(stat_columns).fill_null(0.0)
    )

    conditions = summary.select(CONDITION).unique()
    if order is not None:
        ranked = order.select(CONDITION).unique(maintain_order=True).with_row_index("rank")
        conditions = conditions.join(ranked, on=list(CONDITION), how="left").sort(
            ["rank", *CONDITION], nulls_last=True
        )
    else:
        conditions = conditions.sort(CONDITION)
    conditions = conditions.select(CONDITION).with_row_index("c").with_columns(pl.col("c").cast(pl.Int64))
    questions = sorted(summary["question_id"].unique().to_list())
    q_index = pl.DataFrame({"question_id": questions, "q": np.arange(len(questions))})
    seed_index = (
        summary.select([*CONDITION, "seed"]).unique().sort("seed")
        .with_columns(pl.col("seed").rank("dense").over(list(CONDITION)).cast(pl.Int64).alias("s") - 1)
    )
    summary = (
        summary.join(conditions, on=list(CONDITION))
        .join(seed_index, on=[*CONDITION, "seed"])
        .join(q_index, on="question_id")
    )
    per_condition = summary.group_by("c").agg(
        (pl.col("s").max() + 1).alias("n_seeds"),
        pl.col("q").filter(pl.col("n") > 0).n_unique().alias("n_questions"),
    )
    conditions = conditions.join(per_condition, on="c").sort("c")
    n_seeds = conditions["n_seeds"].to_numpy()
    C, S, Q = conditions.height, int(n_seeds.max(initial=1)), len(questions)
    cells = np.zeros((C, S, Q, len(stat_columns)))
    idx = (summary["c"].to_numpy(), summary["s"].to_numpy(), summary["q"].to_numpy())
    cells[idx] = summary.select(stat_columns).to_numpy()

    located = (
        scored.select([*CONDITION, "seed", "question_id", "aligned"])
        .join(conditions.select(["c", *CONDITION]), on=list(CONDITION))
        .join(seed_index, on=[*CONDITION, "seed"])
        .join(q_index, on="question_id")
        .with_columns((pl.col("s") * Q + pl.col("q")).alias("cell"))
        .sort("c")
    )
    bounds = np.searchsorted(located["c"].to_numpy(), np.arange(C + 1))
    aligned = located["aligned"].to_numpy()
    flat_cells = located["cell"].to_numpy()
    values = [aligned[bounds[c] : bounds[c + 1]] for c in range(C)]
    value_cells = [flat_cells[bounds[c] : bounds[c + 1]] for c in range(C)]
    return Design(conditions, questions, stat_columns, cells, n_seeds, values, value_cells)


class ClusterBootstrap:
    """Replicate weights and replicate totals of every condition."""

    def __init__(self, design: Design, resamples: int, seed: int):
        self.design = design
        self.resamples = resamples
        rng = np.random.default_rng(seed)
        C, S, Q, _ = design.cells.shape
        self.question_counts = rng.multinomial(Q, np.full(Q, 1.0 / Q), size=resamples).astype(np.float64)
        self.seed_counts = np.ones((resamples, C, S))
        for c in range(C):
            n = int(design.n_seeds[c])
            if n > 1:
                self.seed_counts[:, c, :n] = rng.multinomial(n, np.full(n, 1.0 / n), size=resamples)
        # distinct question draws (about a third of them for 8 questions): quantiles of
        # single-seed groups are computed once per distinct draw
        self.distinct_question_counts, self.question_draw = np.unique(
            self.question_counts, axis=0, return_inverse=True
        )
        self.question_draw = self.question_draw.ravel()

    @cached_property
    def point(self) -> np.ndarray:
        """(C, k) totals of the observed data."""
        return self.design.cells.sum(axis=(1, 2))

    @cached_property
    def totals(self) -> np.ndarray:
        """(C, B, k) totals of each condition in each replicate."""
        C, S, Q, k = self.design.cells.shape
        totals = np.zeros((self.resamples, C, k))
        for s in range(S):
            per_seed = self.question_counts @ self.design.cells[:, s].transpose(1, 0, 2).reshape(Q, C * k)
            totals += self.seed_counts[:, :, s, None] * per_seed.reshape(self.resamples, C, k)
        return np.ascontiguousarray(totals.transpose(1, 0, 2))

    def cell_weights(self, c: int) -> np.ndarray:
        """(B, S_max * Q) weight of each cell of condition c in each replicate."""
        S, Q = self.design.cells.shape[1], self.design.cells.shape[2]
        return (self.seed_counts[:, c, :, None] * self.question_counts[:, None, :]).reshape(-1, S * Q)

    def quantile(self, rows: Sequence[int], percent: float) -> tuple[float, np.ndarray]:
        """Point estimate and replicates of the `percent` percentile of the pooled
        answers of conditions `rows` (numpy's default linear interpolation)."""
        values = np.concatenate([self.design.values[c] for c in rows])
        if values.size == 0:
            return float("nan"), np.full(self.resamples, np.nan)
        point = float(np.percentile(values, percent))
        single_seed = all(self.design.n_seeds[c] == 1 for c in rows)
        if single_seed:  # a cell's weight is its question's count: group cells by question
            cells = np.concatenate([self.design.value_cells[c] for c in rows])
        else:
            width = self.design.cells.shape[1] * self.design.cells.shape[2]
            cells = np.concatenate([self.design.value_cells[c] + j * width for j, c in enumerate(rows)])
        order = np.argsort(values, kind="stable")
        values, cells = values[order], cells[order]
        used, local = np.unique(cells, return_inverse=True)
        # running[i, cell]: answers of `cell` among the i + 1 smallest values
        running = np.zeros((values.size, used.size))
        running[np.arange(values.size), local] = 1.0
        np.cumsum(running, axis=0, out=running)
        if single_seed:
            distinct = weighted_percentile(values, running, self.distinct_question_counts[:, used], percent)
            return point, distinct[self.question_draw]
        weights = np.concatenate([self.cell_weights(c) for c in rows], axis=1)[:, used]
        return point, weighted_percentile(values, running, weights, percent)


def weighted_percentile(
    values: np.ndarray, running: np.ndarray, weights: np.ndarray, percent: float
) -> np.ndarray:
    """Per row of `weights` (B, cells), the percentile (numpy 'linear') of the sample
    that repeats each sorted value by the integer weight of its cell; `running`
    (N, cells) counts each cell's answers among the i + 1 smallest values.

    The position of the j-th smallest element of a replicate is found by bisection on
    the replicate's running total (weights @ running[i]), which rises with i: about
    log2(N) products of size B x cells instead of one of size B x N x cells."""
    total = weights @ running[-1]
    position = (total - 1.0) * percent / 100.0
    low = np.floor(position)
    targets = np.concatenate([low, low + 1.0])  # 0-based ranks in the replicate sample
    stacked = np.concatenate([weights, weights])
    # first index whose running total exceeds the target: the element holding that rank
    lo = np.zeros(targets.size, dtype=np.int64)
    hi = np.full(targets.size, values.size - 1, dtype=np.int64)
    while np.any(active := lo < hi):
        mid = (lo + hi) // 2
        above = np.einsum("bc,bc->b", stacked, running[mid]) > targets
        hi = np.where(active & above, mid, hi)
        lo = np.where(active & ~above, mid + 1, lo)
    i0, i1 = np.split(lo, 2)
    frac = position - low
    result = values[i0] + frac * (values[i1] - values[i0])
    return np.where(total > 0, result, np.nan)


def expanded_alpha(units: np.ndarray | int, alpha: float) -> np.ndarray:
    """Two-sided alpha of Hesterberg's expanded percentile interval (Am. Stat. 2015):
    widens the percentile interval for few resampled units so that it matches a t
    interval's width; `units` is the number of top-level units resampled."""
    units = np.asarray(units, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = stats.t.ppf(1 - alpha / 2, units - 1)
        expanded = 2 * stats.norm.cdf(-np.sqrt(units / (units - 1)) * t)
    return np.where(units >= 2, expanded, np.nan)


def bootstrap_interval(
    replicates: np.ndarray, units: np.ndarray | int, alpha: float, method: str = "expanded_percentile"
) -> tuple[np.ndarray, np.ndarray]:
    """Per-column interval of `replicates` (B, m); NaN replicates are ignored.
    method: "percentile" or "expanded_percentile"."""
    replicates = np.asarray(replicates, dtype=np.float64)
    if replicates.ndim == 1:
        replicates = replicates[:, None]
    m = replicates.shape[1]
    units = np.broadcast_to(np.asarray(units), (m,))
    if method == "percentile":
        alphas = np.where(units >= 2, alpha, np.nan)
    elif method == "expanded_percentile":
        alphas = expanded_alpha(units, alpha)
    else:
        raise ValueError(f"statistics.bootstrap_interval: unknown method {method!r}")
    low, high = np.full(m, np.nan), np.full(m, np.nan)
    has_nan = np.isnan(replicates).any(axis=0)
    for a in np.unique(alphas[~np.isnan(alphas)]):
        probabilities = [a / 2, 1 - a / 2]
        clean = np.flatnonzero((alphas == a) & ~has_nan)
        if clean.size:
            low[clean], high[clean] = np.quantile(replicates[:, clean], probabilities, axis=0)
        for column in np.flatnonzero((alphas == a) & has_nan):
            finite = replicates[~np.isnan(replicates[:, column]), column]
            if finite.size:
                low[column], high[column] = np.quantile(finite, probabilities)
    return low, high


def cluster_t_interval(
    strata: Sequence[tuple[np.ndarray, np.ndarray]], alpha: float
) -> tuple[float, float, float, float, float]:
    """Mean of the pooled answers with a cluster-robust (CR1) t interval.

    `strata`: one (cluster sums, cluster counts) pair per stratum. With one stratum
    this is statsmodels' OLS-on-a-constant with cov_type="cluster" and G - 1 degrees
    of freedom; with several (runs nested in datasets) the stratum variances add, with
    Satterthwaite degrees of freedom. Returns (mean, low, high, se, df)."""
    total_n = sum(float(np.sum(n)) for _, n in strata)
    if total_n == 0:
        return (float("nan"),) * 5
    mean = sum(float(np.sum(s)) for s, _ in strata) / total_n
    parts, dfs = [], []
    for sums, counts in strata:
        keep = counts > 0
        sums, counts = sums[keep], counts[keep]
        g, n_d = sums.size, counts.sum()
        if g < 2:
            return mean, float("nan"), float("nan"), float("nan"), float("nan")
        stratum_mean = sums.sum() / n_d
        variance = g / (g - 1) * np.sum((sums - counts * stratum_mean) ** 2) / n_d**2
        parts.append((n_d / total_n) ** 2 * variance)
        dfs.append(g - 1)
    variance = float(np.sum(parts))
    if variance == 0:
        return mean, mean, mean, 0.0, float(sum(dfs))
    df = float(dfs[0]) if len(dfs) == 1 else variance**2 / float(np.sum(np.square(parts) / np.asarray(dfs)))
    se = variance**0.5
    half = stats.t.ppf(1 - alpha / 2, df) * se
    return mean, mean - half, mean + half, se, df
