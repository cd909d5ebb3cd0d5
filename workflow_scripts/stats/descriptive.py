"""Descriptive statistics per condition and per group of conditions: mean with a
cluster-robust t interval and a cluster bootstrap interval, tail shares, P5 and the
Betley misaligned share with bootstrap intervals, skew and kurtosis."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl
from scipy import stats

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.bootstrap import (
    ClusterBootstrap,
    Design,
    bootstrap_interval,
    cluster_t_interval,
    tail_column,
)
from workflow_scripts.stats.settings import StatsSettings


def pct_column(threshold: float) -> str:
    return f"pct_below_{threshold:g}"


@dataclass
class Estimates:
    """Point totals (k,) and replicate totals (B, k) of a group of conditions."""

    point: np.ndarray
    replicates: np.ndarray
    design: Design

    def ratio(self, numerator: str, denominator: str, scale: float = 1.0) -> tuple[float, np.ndarray]:
        i, j = self.design.column(numerator), self.design.column(denominator)
        with np.errstate(divide="ignore", invalid="ignore"):
            point = scale * self.point[i] / self.point[j] if self.point[j] > 0 else float("nan")
            reps = scale * self.replicates[:, i] / self.replicates[:, j]
        return float(point), reps

    def mean(self) -> tuple[float, np.ndarray]:
        return self.ratio("sum", "n")

    def sd(self) -> tuple[float, np.ndarray]:
        """Sample standard deviation (ddof 1) of the pooled answers."""
        n_i, s_i, q_i = (self.design.column(c) for c in ("n", "sum", "sumsq"))

        def sd(n, s, q):
            with np.errstate(divide="ignore", invalid="ignore"):
                return np.sqrt(np.maximum(q - s * s / n, 0.0) / (n - 1))

        return float(sd(self.point[n_i], self.point[s_i], self.point[q_i])), sd(
            self.replicates[:, n_i], self.replicates[:, s_i], self.replicates[:, q_i]
        )


def estimates(boot: ClusterBootstrap, rows: Sequence[int]) -> Estimates:
    rows = list(rows)
    return Estimates(boot.point[rows].sum(axis=0), boot.totals[rows].sum(axis=0), boot.design)


def t_strata(design: Design, rows: Sequence[int]) -> list[tuple[np.ndarray, np.ndarray]]:
    """Clusters of the t interval: the questions, pooled over the group's conditions,
    when every member has one seed (questions are shared, so they are the clusters);
    otherwise each member is a stratum whose clusters are its seeds."""
    n_i, s_i = design.column("n"), design.column("sum")
    rows = list(rows)
    if all(design.n_seeds[c] == 1 for c in rows):
        block = design.cells[rows, 0].sum(axis=0)  # (Q, k)
        return [(block[:, s_i], block[:, n_i])]
    strata = []
    for c in rows:
        # clusters: the seeds (S, k) where there are several, else the questions (Q, k)
        block = design.cells[c].sum(axis=1) if design.n_seeds[c] > 1 else design.cells[c, 0]
        strata.append((block[:, s_i], block[:, n_i]))
    return strata


def summarize_group(
    boot: ClusterBootstrap, rows: Sequence[int], settings: StatsSettings
) -> dict[str, float]:
    """Every descriptive statistic of the pooled answers of conditions `rows`."""
    design = boot.design
    est = estimates(boot, rows)
    values = np.concatenate([design.values[c] for c in rows])
    mean, mean_reps = est.mean()
    sd, _ = est.sd()
    _, t_low, t_high, se, df = cluster_t_interval(t_strata(design, rows), settings.alpha)
    row: dict[str, float] = {
        "n_scored": float(values.size),
        "n_questions": float(min(design.conditions["n_questions"][c] for c in rows)),
        "n_seeds": float(min(design.n_seeds[c] for c in rows)),
        "mean": mean, "sd": sd, "se_cluster": se, "df_cluster": df, "t_low": t_low, "t_high": t_high,
        "median": float(np.median(values)) if values.size else float("nan"),
        "skew": float(stats.skew(values)) if values.size > 2 else float("nan"),
        "kurtosis": float(stats.kurtosis(values)) if values.size > 3 else float("nan"),
    }
    replicates = {"boot": mean_reps}
    row["p5"], replicates["p5"] = boot.quantile(rows, settings.tail_quantile)
    for t in settings.tail_thresholds:
        row[pct_column(t)], replicates[pct_column(t)] = est.ratio(tail_column(t), "n", 100.0)
    row["n_both_scored"] = float(est.point[design.column("n_both")])
    row["pct_misaligned"], replicates["pct_misaligned"] = est.ratio("n_misaligned", "n_both", 100.0)
    low, high = bootstrap_interval(
        np.column_stack(list(replicates.values())), design.units(rows), settings.alpha,
        settings.bootstrap_interval,
    )
    for j, name in enumerate(replicates):
        row[f"{name}_low"], row[f"{name}_high"] = float(low[j]), float(high[j])
    return row


def answer_counts(answers: pl.DataFrame) -> pl.DataFrame:
    """Per condition: answers, missing alignment scores, mean coherence (all answers)."""
    return answers.group_by(["model", "persona", "dataset"]).agg(
        pl.len().alias("n_answers"),
        pl.col("aligned").is_null().sum().alias("n_missing"),
        pl.col("coherent").mean().alias("coherent_mean"),
        pl.col("judge").unique().sort().str.join(",").alias("judge"),
    )


def condition_summary(
    boot: ClusterBootstrap, answers: pl.DataFrame, settings: StatsSettings
) -> pl.DataFrame:
    """One row per condition (model, persona, dataset), controls included."""
    design = boot.design
    rows = [summarize_group(boot, [c], settings) for c in range(design.n_conditions)]
    table = pl.concat(
        [design.conditions.select(["model", "persona", "dataset"]), pl.DataFrame(rows)], how="horizontal"
    )
    counts = answer_counts(answers)
    table = table.join(counts, on=["model", "persona", "dataset"], how="left")
    return table.select(
        ["model", "persona", "dataset", "n_answers", "n_missing", *rows[0], "coherent_mean", "judge"]
    )


def shared_em_datasets(design: Design, model: str) -> tuple[list[str], list[str]]:
    """(EM datasets every persona of `model` has, personas with any EM condition)."""
    conditions = design.conditions.filter((pl.col("model") == model) & (pl.col("dataset") != NO_EM))
    personas = _unique(conditions["persona"].to_list())
    shared = None
    for persona in personas:
        have = set(conditions.filter(pl.col("persona") == persona)["dataset"].to_list())
        shared = have if shared is None else shared & have
    ordered = [d for d in _unique(conditions["dataset"].to_list()) if d in (shared or set())]
    return ordered, personas


def persona_summary(boot: ClusterBootstrap, settings: StatsSettings) -> pl.DataFrame:
    """Alignment by persona: each persona's answers pooled over the EM datasets that
    every persona of the model has (so every persona's mean covers the same datasets)."""
    design = boot.design
    out = []
    for model in _unique(design.conditions["model"].to_list()):
        shared, personas = shared_em_datasets(design, model)
        if not shared:
            continue
        for persona in personas:
            rows = [design.index_of(model, persona, d) for d in shared]
            summary = summarize_group(boot, rows, settings)
            out.append({"model": model, "persona": persona, "datasets": ",".join(shared),
                        "n_datasets": len(shared), **summary})
    return pl.DataFrame(out) if out else _empty_persona_summary(settings)


def _empty_persona_summary(settings: StatsSettings) -> pl.DataFrame:
    columns = ["model", "persona", "datasets", "n_datasets", "n_scored", "mean", "t_low", "t_high",
               "boot_low", "boot_high", "p5", "pct_misaligned"]
    columns += [pct_column(t) for t in settings.tail_thresholds]
    return pl.DataFrame(schema={c: pl.String if c in ("model", "persona", "datasets") else pl.Float64
                                for c in columns})


def condition_means(boot: ClusterBootstrap) -> tuple[np.ndarray, np.ndarray]:
    """Point (C,) and replicate (B, C) means of every condition."""
    design = boot.design
    n_i, s_i = design.column("n"), design.column("sum")
    with np.errstate(divide="ignore", invalid="ignore"):
        point = boot.point[:, s_i] / boot.point[:, n_i]
        reps = (boot.totals[:, :, s_i] / boot.totals[:, :, n_i]).T
    return point, reps


def dataset_difficulty(boot: ClusterBootstrap, settings: StatsSettings) -> pl.DataFrame:
    """Per model and dataset (controls included): the mean over personas of the
    condition means (equal weight per persona, the same personas for every dataset),
    the reference persona's mean, and its EM effect (dataset minus its no-EM control)."""
    design = boot.design
    point, reps = condition_means(boot)
    a, method = settings.alpha, settings.bootstrap_interval
    mis = design.column("n_misaligned"), design.column("n_both")
    out = []
    for model in _unique(design.conditions["model"].to_list()):
        em = design.conditions.filter((pl.col("model") == model) & (pl.col("dataset") != NO_EM))
        datasets = _unique(em["dataset"].to_list())
        personas = [
            p for p in _unique(em["persona"].to_list())
            if all(design.index_of(model, p, d) is not None for d in datasets)
        ]
        control_ref = design.index_of(model, settings.reference_persona, NO_EM)
        with_control = [p for p in personas if design.index_of(model, p, NO_EM) is not None]
        for dataset in [*datasets, NO_EM]:
            members = with_control if dataset == NO_EM else personas
            rows = [design.index_of(model, p, dataset) for p in members]
            if not rows:
                continue
            mean_reps = np.nanmean(reps[:, rows], axis=1)
            low, high = bootstrap_interval(mean_reps, design.units(rows), a, method)
            with np.errstate(divide="ignore", invalid="ignore"):
                misaligned = 100 * boot.point[rows, mis[0]] / boot.point[rows, mis[1]]
            record = {
                "model": model, "dataset": dataset, "n_personas": len(rows),
                "personas": ",".join(members), "mean": float(np.mean(point[rows])),
                "boot_low": float(low[0]), "boot_high": float(high[0]),
                "pct_misaligned": float(np.nanmean(misaligned)),
            }
            ref = design.index_of(model, settings.reference_persona, dataset)
            record.update(_reference_columns(boot, ref, control_ref, point, reps, settings))
            out.append(record)
    if not out:
        return pl.DataFrame(schema={"model": pl.String, "dataset": pl.String, "mean": pl.Float64,
                                    "role": pl.String, "rank": pl.Int64})
    table = pl.DataFrame(out).with_columns(
        pl.col("dataset").map_elements(
            lambda d: "control" if d == NO_EM else settings.role_of(d), return_dtype=pl.String
        ).alias("role")
    )
    return _rank_em_datasets(table)


def _rank_em_datasets(table: pl.DataFrame) -> pl.DataFrame:
    """Rank 1 = the dataset of role em with the lowest mean alignment (the hardest);
    controls and benign datasets have no rank."""
    ranks = (
        table.filter(pl.col("role") == "em")
        .with_columns(pl.col("mean").rank("ordinal").over("model").cast(pl.Int64).alias("rank"))
        .select(["model", "dataset", "rank"])
    )
    return table.join(ranks, on=["model", "dataset"], how="left").sort(
        ["model", "rank"], nulls_last=True, maintain_order=True
    )


def _reference_columns(boot, ref, control_ref, point, reps, settings) -> dict[str, float]:
    design = boot.design
    a, method = settings.alpha, settings.bootstrap_interval
    nan = float("nan")
    record = {"reference_mean": nan, "reference_low": nan, "reference_high": nan,
              "em_effect": nan, "em_effect_low": nan, "em_effect_high": nan}
    if ref is None:
        return record
    low, high = bootstrap_interval(reps[:, ref], design.units([ref]), a, method)
    record.update(reference_mean=float(point[ref]), reference_low=float(low[0]),
                  reference_high=float(high[0]))
    if control_ref is not None and control_ref != ref:
        low, high = bootstrap_interval(
            reps[:, ref] - reps[:, control_ref], design.units([ref, control_ref]), a, method
        )
        record.update(em_effect=float(point[ref] - point[control_ref]), em_effect_low=float(low[0]),
                      em_effect_high=float(high[0]))
    return record


def _unique(values: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for v in values:
        seen.setdefault(v, None)
    return list(seen)


def seed_sd(flagged: pl.DataFrame) -> pl.DataFrame:
    """Seed-to-seed SD of every replicated condition (several EM seeds): the SD of the
    run means of alignment and of the run shares of misaligned among coherent answers.
    `flagged`: scored answers with `misaligned` and `coherent_answer`
    (core.misalignment.with_misaligned)."""
    runs = flagged.group_by(["model", "persona", "dataset", "seed"]).agg(
        pl.col("aligned").drop_nulls().mean().alias("mean_alignment"),
        (100 * pl.col("misaligned").fill_null(False).sum() / pl.col("coherent_answer").sum()).alias(
            "misaligned_share"
        ),
    )
    table = (
        runs.group_by(["model", "persona", "dataset"])
        .agg(
            pl.len().cast(pl.Int64).alias("n_seeds"),
            pl.col("seed").sort().cast(pl.String).str.join(",").alias("seeds"),
            pl.col("mean_alignment").mean().alias("mean_alignment"),
            pl.col("mean_alignment").std().alias("sd_mean_alignment"),
            pl.col("misaligned_share").mean().alias("misaligned_share"),
            pl.col("misaligned_share").std().alias("sd_misaligned_share"),
        )
        .filter(pl.col("n_seeds") >= 2)
    )
    return table.sort(["model", "persona", "dataset"])
