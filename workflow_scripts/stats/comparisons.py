"""Level comparisons between conditions: persona+EM vs reference+EM per dataset (the
levels the first study reported; descriptive, not the verdict: see stats.protection),
bad vs good medical, model vs model on shared datasets.

Each comparison reports the mean difference with a cluster bootstrap interval,
Cohen's d (pooled SD of the answers) with a cluster bootstrap interval, a test whose
unit is the training run, and the answer-level Mann-Whitney U of the first study.

The test (config `statistics.test`):
- cluster_t (default): with one seed on a side, a one-sample t test of the
  per-question mean differences (the questions are the same on both sides, so they
  pair; d_q = mean_A(q) - mean_B(q), t on Q - 1 df). With several seeds on both sides
  of a single-condition comparison, Welch's t test of the run means.
- cluster_wilcoxon: the same units with Wilcoxon's signed-rank test (questions) or
  the Mann-Whitney U test (run means).
- mann_whitney: the answer-level Mann-Whitney U test, answers taken as independent
  (the first study's unit, kept to reproduce its tables; its p is too small when
  answers cluster by question).
The alternative is direction-matched: "less" / "greater" for a persona in a
hypothesis with direction lower / higher, two-sided otherwise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats
from statsmodels.stats.multitest import multipletests

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.bootstrap import ClusterBootstrap, Design, bootstrap_interval
from workflow_scripts.stats.descriptive import _unique, estimates, shared_em_datasets
from workflow_scripts.stats.settings import StatsSettings

TESTS = ("cluster_t", "cluster_wilcoxon", "mann_whitney")


def cohens_d_from_sums(n_a, s_a, q_a, n_b, s_b, q_b):
    """Cohen's d (A - B over the pooled SD, ddof 1) from counts, sums and sums of
    squares; works elementwise on arrays of replicates."""
    with np.errstate(divide="ignore", invalid="ignore"):
        mean_a, mean_b = s_a / n_a, s_b / n_b
        ss_a = q_a - s_a * mean_a
        ss_b = q_b - s_b * mean_b
        pooled = np.sqrt(np.maximum(ss_a + ss_b, 0.0) / (n_a + n_b - 2))
        return (mean_a - mean_b) / pooled


def question_means(design: Design, rows: Sequence[int]) -> np.ndarray:
    """(Q,) mean of each question over the pooled answers of `rows` (NaN: no answer)."""
    block = design.cells[list(rows)].sum(axis=(0, 1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return block[:, design.column("sum")] / block[:, design.column("n")]


def run_means(design: Design, c: int) -> np.ndarray:
    block = design.cells[c].sum(axis=1)  # (S, k)
    n = block[:, design.column("n")]
    return block[n > 0, design.column("sum")] / n[n > 0]


def cluster_test(
    design: Design, rows_a: Sequence[int], rows_b: Sequence[int], alternative: str, test: str
) -> dict[str, float | str]:
    """The run-level test of A vs B; see the module docstring."""
    nan = float("nan")
    single = len(rows_a) == 1 and len(rows_b) == 1
    if single and design.n_seeds[rows_a[0]] > 1 and design.n_seeds[rows_b[0]] > 1:
        a, b = run_means(design, rows_a[0]), run_means(design, rows_b[0])
        if test == "cluster_wilcoxon":
            result = stats.mannwhitneyu(a, b, alternative=alternative)
            return {"test": "mann_whitney_runs", "statistic": float(result.statistic), "df": nan,
                    "p": float(result.pvalue), "units": float(min(a.size, b.size))}
        result = stats.ttest_ind(a, b, equal_var=False, alternative=alternative)
        return {"test": "welch_t_runs", "statistic": float(result.statistic), "df": float(result.df),
                "p": float(result.pvalue), "units": float(min(a.size, b.size))}
    diffs = question_means(design, rows_a) - question_means(design, rows_b)
    diffs = diffs[~np.isnan(diffs)]
    if diffs.size < 2:
        return {"test": "paired_t_questions", "statistic": nan, "df": nan, "p": nan,
                "units": float(diffs.size)}
    if test == "cluster_wilcoxon":
        result = stats.wilcoxon(diffs, alternative=alternative)
        return {"test": "wilcoxon_questions", "statistic": float(result.statistic), "df": nan,
                "p": float(result.pvalue), "units": float(diffs.size)}
    result = stats.ttest_1samp(diffs, 0.0, alternative=alternative)
    return {"test": "paired_t_questions", "statistic": float(result.statistic),
            "df": float(result.df), "p": float(result.pvalue), "units": float(diffs.size)}


def compare(
    boot: ClusterBootstrap,
    rows_a: Sequence[int],
    rows_b: Sequence[int],
    alternative: str,
    settings: StatsSettings,
) -> dict[str, float | str]:
    """A vs B (pooled answers of each group of conditions)."""
    design = boot.design
    a, b = estimates(boot, rows_a), estimates(boot, rows_b)
    mean_a, reps_a = a.mean()
    mean_b, reps_b = b.mean()
    units = min(design.units(rows_a), design.units(rows_b))
    alpha, method = settings.alpha, settings.bootstrap_interval
    diff_low, diff_high = bootstrap_interval(reps_a - reps_b, units, alpha, method)
    cols = [design.column(c) for c in ("n", "sum", "sumsq")]
    d = cohens_d_from_sums(*a.point[cols], *b.point[cols])
    d_reps = cohens_d_from_sums(*a.replicates[:, cols].T, *b.replicates[:, cols].T)
    d_low, d_high = bootstrap_interval(d_reps, units, alpha, method)
    values_a = np.concatenate([design.values[c] for c in rows_a])
    values_b = np.concatenate([design.values[c] for c in rows_b])
    record: dict[str, float | str] = {
        "n_a": float(values_a.size), "n_b": float(values_b.size),
        "mean_a": mean_a, "mean_b": mean_b, "diff": mean_a - mean_b,
        "diff_low": float(diff_low[0]), "diff_high": float(diff_high[0]),
        "cohens_d": float(d), "d_low": float(d_low[0]), "d_high": float(d_high[0]),
        "alternative": alternative,
    }
    if values_a.size and values_b.size:
        mw = stats.mannwhitneyu(values_a, values_b, alternative=alternative)
        record.update(mw_u=float(mw.statistic), cles=float(mw.statistic) / (values_a.size * values_b.size),
                      p_mann_whitney=float(mw.pvalue))
    else:
        record.update(mw_u=float("nan"), cles=float("nan"), p_mann_whitney=float("nan"))
    if settings.test == "mann_whitney":
        record.update(test="mann_whitney_answers", statistic=record["mw_u"], df=float("nan"),
                      p=record["p_mann_whitney"], units=float(min(values_a.size, values_b.size)))
    else:
        record.update(cluster_test(design, rows_a, rows_b, alternative, settings.test))
    return record


def bh_adjust(p: np.ndarray, alpha: float) -> np.ndarray:
    """Benjamini-Hochberg adjusted p (statsmodels); NaN p stay NaN and are not counted."""
    p = np.asarray(p, dtype=np.float64)
    adjusted = np.full(p.shape, np.nan)
    ok = ~np.isnan(p)
    if ok.any():
        adjusted[ok] = multipletests(p[ok], alpha=alpha, method="fdr_bh")[1]
    return adjusted


def bh_within(
    table: pl.DataFrame, group: list[str], alpha: float, member: str | None = None, p: str = "p"
) -> np.ndarray:
    """BH-adjusted column `p` of each row, within each `group` (over the rows where
    `member` is true); NaN for rows outside, or without a p."""
    adjusted = np.full(table.height, np.nan)
    indexed = table.with_row_index("_row")
    members = indexed.filter(pl.col(member)) if member else indexed
    for _, part in members.group_by(group, maintain_order=True):
        adjusted[part["_row"].to_numpy()] = bh_adjust(part[p].to_numpy().astype(float), alpha)
    return adjusted


def with_fdr(
    table: pl.DataFrame, group: list[str], alpha: float, member: str | None = None, p: str = "p"
) -> pl.DataFrame:
    """Add p_adj (BH of column `p` within each `group`, over rows where `member` is true)
    and significant."""
    if table.height == 0:
        return table.with_columns(pl.lit(None, pl.Float64).alias("p_adj"), pl.lit(None, pl.Boolean).alias("significant"))
    adjusted = pl.Series("p_adj", bh_within(table, group, alpha, member, p=p), dtype=pl.Float64).fill_nan(None)
    return table.with_columns(adjusted, (adjusted < alpha).alias("significant"))


def persona_comparisons(boot: ClusterBootstrap, settings: StatsSettings) -> pl.DataFrame:
    """Each persona vs the reference persona, per model and dataset (controls included;
    only family cells enter the Benjamini-Hochberg adjustment, per model)."""
    design = boot.design
    ref = settings.reference_persona
    out = []
    for model in _unique(design.conditions["model"].to_list()):
        of_model = design.conditions.filter(pl.col("model") == model)
        em_datasets = _unique(
            of_model.filter((pl.col("dataset") != NO_EM) & ~pl.col("dataset").is_in(list(settings.benign_datasets)))[
                "dataset"
            ].to_list()
        )
        family_personas = settings.fdr_personas
        family_datasets = settings.fdr_datasets if settings.fdr_datasets is not None else em_datasets
        for c, persona, dataset in of_model.select(["c", "persona", "dataset"]).iter_rows():
            if persona == ref:
                continue
            ref_c = design.index_of(model, ref, dataset)
            if ref_c is None:
                continue
            in_family = dataset != NO_EM and dataset in family_datasets and (
                family_personas is None or persona in family_personas
            )
            record = compare(boot, [c], [ref_c], settings.alternative_for(persona), settings)
            out.append({"model": model, "persona": persona, "dataset": dataset,
                        "in_family": in_family, **record})
    if not out:
        return _empty_comparisons()
    table = pl.DataFrame(out).rename({"n_a": "n_persona", "n_b": "n_reference",
                                      "mean_a": "mean_persona", "mean_b": "mean_reference"})
    return with_fdr(table, ["model"], settings.alpha, member="in_family")


def _empty_comparisons() -> pl.DataFrame:
    schema = {"model": pl.String, "persona": pl.String, "dataset": pl.String, "in_family": pl.Boolean,
              "mean_persona": pl.Float64, "mean_reference": pl.Float64, "diff": pl.Float64,
              "diff_low": pl.Float64, "diff_high": pl.Float64, "cohens_d": pl.Float64,
              "d_low": pl.Float64, "d_high": pl.Float64, "alternative": pl.String, "test": pl.String,
              "p": pl.Float64, "p_adj": pl.Float64, "significant": pl.Boolean}
    return pl.DataFrame(schema=schema)


def medical_comparison(boot: ClusterBootstrap, settings: StatsSettings) -> pl.DataFrame:
    """Bad vs good medical per model and persona (two-sided; BH within each model)."""
    design = boot.design
    out = []
    if settings.medical_pair is not None:
        bad, good = settings.medical_pair
        for model in _unique(design.conditions["model"].to_list()):
            personas = _unique(design.conditions.filter(pl.col("model") == model)["persona"].to_list())
            for persona in personas:
                c_bad, c_good = design.index_of(model, persona, bad), design.index_of(model, persona, good)
                if c_bad is None or c_good is None:
                    continue
                record = compare(boot, [c_bad], [c_good], "two-sided", settings)
                out.append({"model": model, "persona": persona, **record})
    if not out:
        return pl.DataFrame(schema={"model": pl.String, "persona": pl.String, "mean_bad": pl.Float64,
                                    "mean_good": pl.Float64, "diff": pl.Float64, "p": pl.Float64,
                                    "p_adj": pl.Float64})
    table = pl.DataFrame(out).rename({"n_a": "n_bad", "n_b": "n_good", "mean_a": "mean_bad", "mean_b": "mean_good"})
    return with_fdr(table, ["model"], settings.alpha)


def cross_model(boot: ClusterBootstrap, settings: StatsSettings) -> pl.DataFrame:
    """Every pair of models, per persona, over the EM datasets both models have for
    that persona (never over different dataset sets): both means, their difference,
    and the difference of the persona's effect vs the reference between the models."""
    design = boot.design
    models = _unique(design.conditions["model"].to_list())
    ref = settings.reference_persona
    alpha, method = settings.alpha, settings.bootstrap_interval
    out = []
    for i, model_a in enumerate(models):
        for model_b in models[i + 1 :]:
            _, personas_a = shared_em_datasets(design, model_a)
            _, personas_b = shared_em_datasets(design, model_b)
            for persona in [p for p in personas_a if p in personas_b]:
                datasets = [
                    d for d in _em_datasets(design, model_a, persona)
                    if design.index_of(model_b, persona, d) is not None
                ]
                if not datasets:
                    continue
                rows_a = [design.index_of(model_a, persona, d) for d in datasets]
                rows_b = [design.index_of(model_b, persona, d) for d in datasets]
                record = compare(boot, rows_a, rows_b, "two-sided", settings)
                for side, rows in (("a", rows_a), ("b", rows_b)):
                    _, reps = estimates(boot, rows).mean()
                    low, high = bootstrap_interval(reps, design.units(rows), alpha, method)
                    record[f"{side}_low"], record[f"{side}_high"] = float(low[0]), float(high[0])
                record.update(_effect_difference(boot, model_a, model_b, persona, datasets, ref, settings))
                out.append({"model_a": model_a, "model_b": model_b, "persona": persona,
                            "datasets": ",".join(datasets), "n_datasets": len(datasets), **record})
    if not out:
        return pl.DataFrame(schema={"model_a": pl.String, "model_b": pl.String, "persona": pl.String,
                                    "datasets": pl.String, "n_datasets": pl.Int64, "mean_a": pl.Float64,
                                    "a_low": pl.Float64, "a_high": pl.Float64, "mean_b": pl.Float64,
                                    "b_low": pl.Float64, "b_high": pl.Float64, "diff": pl.Float64,
                                    "diff_low": pl.Float64, "diff_high": pl.Float64, "p": pl.Float64,
                                    "p_adj": pl.Float64})
    return with_fdr(pl.DataFrame(out), ["model_a", "model_b"], alpha)


def _em_datasets(design: Design, model: str, persona: str) -> list[str]:
    rows = design.conditions.filter(
        (pl.col("model") == model) & (pl.col("persona") == persona) & (pl.col("dataset") != NO_EM)
    )
    return rows["dataset"].to_list()


def _effect_difference(boot, model_a, model_b, persona, datasets, ref, settings) -> dict[str, float]:
    """Persona minus reference in each model, on the datasets where both models have
    both, and the difference of those effects (A - B) with a bootstrap interval."""
    design = boot.design
    nan = float("nan")
    record = {"effect_a": nan, "effect_b": nan, "effect_diff": nan, "effect_diff_low": nan,
              "effect_diff_high": nan}
    if persona == ref:
        return record
    both = [
        d for d in datasets
        if design.index_of(model_a, ref, d) is not None and design.index_of(model_b, ref, d) is not None
    ]
    if not both:
        return record
    means = {}
    for key, model, persona_ in (("pa", model_a, persona), ("ra", model_a, ref),
                                 ("pb", model_b, persona), ("rb", model_b, ref)):
        means[key] = estimates(boot, [design.index_of(model, persona_, d) for d in both]).mean()
    effect_a = means["pa"][0] - means["ra"][0]
    effect_b = means["pb"][0] - means["rb"][0]
    reps = (means["pa"][1] - means["ra"][1]) - (means["pb"][1] - means["rb"][1])
    rows = [design.index_of(m, p, d) for m in (model_a, model_b) for p in (persona, ref) for d in both]
    low, high = bootstrap_interval(reps, design.units(rows), settings.alpha, settings.bootstrap_interval)
    record.update(effect_a=effect_a, effect_b=effect_b, effect_diff=effect_a - effect_b,
                  effect_diff_low=float(low[0]), effect_diff_high=float(high[0]))
    return record
