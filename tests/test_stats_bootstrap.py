"""The cluster bootstrap engine against explicit resampling, and the interval
formulas against statsmodels / scipy."""

import numpy as np
import polars as pl
import pytest
import statsmodels.api as sm
from scipy import stats

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.core.misalignment import with_misaligned
from workflow_scripts.stats.bootstrap import (
    ClusterBootstrap,
    bootstrap_interval,
    build_design,
    cluster_t_interval,
    expanded_alpha,
    weighted_percentile,
)

THRESHOLDS = (80.0, 50.0, 30.0)


def make_boot(answers: pl.DataFrame, resamples: int = 50, seed: int = 3) -> ClusterBootstrap:
    scored = answers.filter(pl.col("aligned").is_not_null())
    design = build_design(scored, with_misaligned(answers), THRESHOLDS)
    return ClusterBootstrap(design, resamples, seed)


def explicit_resample(answers: pl.DataFrame, boot: ClusterBootstrap, b: int, c: int) -> np.ndarray:
    """Replicate b of condition c built by hand: each drawn seed, then each drawn
    question, contributes all of its answers once per draw."""
    design = boot.design
    model, persona, dataset = design.conditions.row(c)[1:4]
    rows = answers.filter(
        (pl.col("model") == model) & (pl.col("persona") == persona) & (pl.col("dataset") == dataset)
        & pl.col("aligned").is_not_null()
    )
    seeds = sorted(rows["seed"].unique().to_list())
    parts = []
    for s_index, seed in enumerate(seeds):
        for q_index, question in enumerate(design.questions):
            times = int(boot.seed_counts[b, c, s_index] * boot.question_counts[b, q_index])
            cell = rows.filter((pl.col("seed") == seed) & (pl.col("question_id") == question))["aligned"]
            parts += [cell.to_numpy()] * times
    return np.concatenate(parts) if parts else np.array([])


@pytest.fixture(scope="module")
def answers() -> pl.DataFrame:
    grid = SyntheticGrid(questions=5, answers_per_question=7, seeds=(0, 1, 2), missing_rate=0.1, seed=11)
    return synthetic_answers(grid)


def test_weighted_percentile_equals_numpy_on_the_repeated_sample():
    rng = np.random.default_rng(0)
    for _ in range(100):
        n, cells = int(rng.integers(1, 40)), int(rng.integers(1, 5))
        values = np.sort(rng.integers(0, 15, n).astype(float))  # ties included
        cell = rng.integers(0, cells, n)
        used, local = np.unique(cell, return_inverse=True)
        running = np.cumsum(np.eye(used.size)[local], axis=0)
        weights = rng.integers(0, 4, (20, used.size)).astype(float)
        percent = float(rng.uniform(0, 100))
        got = weighted_percentile(values, running, weights, percent)
        for b in range(20):
            sample = np.repeat(values, weights[b, local].astype(int))
            want = np.percentile(sample, percent) if sample.size else np.nan
            assert got[b] == pytest.approx(want, nan_ok=True)


def test_replicate_totals_are_the_explicitly_resampled_answers(answers):
    boot = make_boot(answers)
    design = boot.design
    n_i, s_i = design.column("n"), design.column("sum")
    for c in (0, 4, design.n_conditions - 1):
        assert design.n_seeds[c] in (1, 3)
        for b in (0, 7, 31):
            sample = explicit_resample(answers, boot, b, c)
            assert boot.totals[c, b, n_i] == sample.size
            assert boot.totals[c, b, s_i] == pytest.approx(sample.sum())


def test_quantile_replicates_are_percentiles_of_the_resampled_answers(answers):
    boot = make_boot(answers)
    for c in (1, 5):
        point, replicates = boot.quantile([c], 5.0)
        assert point == pytest.approx(np.percentile(boot.design.values[c], 5.0))
        for b in (2, 19, 40):
            assert replicates[b] == pytest.approx(np.percentile(explicit_resample(answers, boot, b, c), 5.0))


def test_single_seed_quantiles_use_the_distinct_draws_consistently():
    answers = synthetic_answers(SyntheticGrid(questions=4, answers_per_question=6, seed=5))
    boot = make_boot(answers, resamples=300)
    assert boot.distinct_question_counts.shape[0] < 300  # some draws repeat
    rows = [0, 1]
    _, replicates = boot.quantile(rows, 10.0)
    for b in (0, 123, 299):
        sample = np.concatenate([explicit_resample(answers, boot, b, c) for c in rows])
        assert replicates[b] == pytest.approx(np.percentile(sample, 10.0))


def test_question_draw_is_shared_by_every_condition(answers):
    boot = make_boot(answers)
    assert boot.question_counts.shape == (50, len(boot.design.questions))
    assert np.all(boot.question_counts.sum(axis=1) == len(boot.design.questions))
    # a single-seed control and a three-seed EM run see the same question draw
    control = boot.design.conditions.filter(pl.col("dataset") == "none")["c"][0]
    assert boot.design.n_seeds[control] == 1
    weights = boot.cell_weights(control)[:, : len(boot.design.questions)]
    np.testing.assert_array_equal(weights, boot.question_counts)


def test_cluster_t_interval_equals_statsmodels_cluster_robust_ols():
    rng = np.random.default_rng(1)
    groups = np.repeat(np.arange(8), rng.integers(10, 30, 8))
    y = rng.normal(60, 15, groups.size) + rng.normal(0, 8, 8)[groups]
    fit = sm.OLS(y, np.ones(y.size)).fit(cov_type="cluster", cov_kwds={"groups": groups}, use_t=True)
    mean, low, high, se, df = cluster_t_interval([(np.bincount(groups, y), np.bincount(groups))], 0.05)
    assert mean == pytest.approx(fit.params[0])
    assert se == pytest.approx(fit.bse[0])
    assert (low, high) == pytest.approx(tuple(fit.conf_int(0.05)[0]))
    assert df == 7


def test_stratified_t_interval_adds_stratum_variances_with_satterthwaite_df():
    rng = np.random.default_rng(2)
    strata, parts = [], []
    for _ in range(2):
        groups = np.repeat(np.arange(3), 20)
        y = rng.normal(50, 10, groups.size) + rng.normal(0, 5, 3)[groups]
        strata.append((np.bincount(groups, y), np.bincount(groups).astype(float)))
        fit = sm.OLS(y, np.ones(y.size)).fit(cov_type="cluster", cov_kwds={"groups": groups})
        parts.append((y.size, fit.bse[0] ** 2))
    total = sum(n for n, _ in parts)
    terms = [(n / total) ** 2 * v for n, v in parts]
    df_want = sum(terms) ** 2 / sum(t**2 / 2 for t in terms)
    mean, _, high, se, df = cluster_t_interval(strata, 0.05)
    assert se == pytest.approx(np.sqrt(sum(terms)))
    assert df == pytest.approx(df_want)
    assert high - mean == pytest.approx(stats.t.ppf(0.975, df_want) * se)


def test_expanded_percentile_matches_hesterberg_formula_and_tends_to_percentile():
    t = stats.t.ppf(0.975, 7)
    assert expanded_alpha(8, 0.05) == pytest.approx(2 * stats.norm.cdf(-np.sqrt(8 / 7) * t))
    assert expanded_alpha(8, 0.05) < 0.05
    assert expanded_alpha(100_000, 0.05) == pytest.approx(0.05, rel=1e-3)
    assert np.isnan(expanded_alpha(1, 0.05))


def test_bootstrap_interval_percentiles_and_nan_handling():
    rng = np.random.default_rng(3)
    reps = rng.normal(size=(4000, 2))
    reps[:10, 1] = np.nan
    low, high = bootstrap_interval(reps, [8, 8], 0.05, "percentile")
    assert low[0] == pytest.approx(np.quantile(reps[:, 0], 0.025))
    assert high[1] == pytest.approx(np.quantile(reps[10:, 1], 0.975))
    wide_low, wide_high = bootstrap_interval(reps, [8, 8], 0.05, "expanded_percentile")
    assert wide_low[0] < low[0] and wide_high[0] > high[0]
    with pytest.raises(ValueError, match="bootstrap_interval"):
        bootstrap_interval(reps, 8, 0.05, "bca")
