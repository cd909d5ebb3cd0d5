"""Comparisons, tests, FDR and verdicts against independent computations, on
synthetic data with known effects."""

import numpy as np
import pingouin
import polars as pl
import pytest
from scipy import stats
from statsmodels.stats.multitest import multipletests

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.core.misalignment import with_misaligned
from workflow_scripts.stats.bootstrap import ClusterBootstrap, build_design
from workflow_scripts.stats.comparisons import persona_comparisons
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables

HYPOTHESES = {"H1": {"personas": ["sycophancy"], "direction": "lower"},
              "H2": {"personas": ["goodness"], "direction": "higher"}}


def settings(**statistics):
    """One seed per condition here: verdicts are allowed (single_seed_verdicts) and read
    on mean alignment, where the planted persona_shift is exactly a protection."""
    block = {"bootstrap_resamples": 500, "hypotheses": HYPOTHESES, "medical_pair": None,
             "single_seed_verdicts": True, "primary": "mean_alignment", **statistics}
    return settings_from_config(block, personas=["baseline", "goodness", "sycophancy", "humor"])


def values(answers, persona, dataset, model=None):
    rows = answers.filter((pl.col("persona") == persona) & (pl.col("dataset") == dataset) & pl.col("aligned").is_not_null())
    if model:
        rows = rows.filter(pl.col("model") == model)
    return rows


def row(table, **where):
    part = table
    for k, v in where.items():
        part = part.filter(pl.col(k) == v)
    assert part.height == 1, where
    return part.row(0, named=True)


@pytest.fixture(scope="module")
def answers():
    grid = SyntheticGrid(
        personas=("baseline", "goodness", "sycophancy", "humor"),
        datasets=("risky_finance", "prudent_finance"),
        persona_shift={"goodness": 8.0, "sycophancy": -8.0},
        run_question_sd=2.0,
        seed=31,
    )
    return synthetic_answers(grid)


@pytest.fixture(scope="module")
def tables(answers):
    return compute_tables(answers, settings())


def test_shifted_personas_are_detected_and_the_null_persona_is_not(tables):
    """The level comparisons find both shifted personas; the protection (four cells, so
    noisier) supports goodness on both datasets and points the right way for sycophancy."""
    levels = tables["comparisons"].filter(pl.col("in_family") & (pl.col("persona") != "humor"))
    assert levels["significant"].all()
    verdicts = {(r["persona"], r["dataset"]): r["verdict"] for r in tables["hypotheses"].to_dicts()}
    assert verdicts[("goodness", "risky_finance")] == verdicts[("goodness", "prudent_finance")] == "supported"
    assert (tables["hypotheses"].filter(pl.col("persona") == "sycophancy")["protection"] < 0).all()
    humor = tables["comparisons"].filter(pl.col("persona") == "humor")
    assert not humor["significant"].fill_null(False).any()
    summary = tables["hypothesis_summary"]
    assert row(summary, hypothesis="H2", persona="goodness")["n_supported"] == 2


def test_paired_question_t_equals_scipy_on_question_means(answers, tables):
    r = row(tables["comparisons"], persona="goodness", dataset="risky_finance")
    means = [
        values(answers, p, "risky_finance").group_by("question_id").agg(pl.col("aligned").mean()).sort("question_id")
        for p in ("goodness", "baseline")
    ]
    want = stats.ttest_rel(means[0]["aligned"], means[1]["aligned"], alternative="greater")
    assert r["test"] == "paired_t_questions" and r["alternative"] == "greater"
    assert r["statistic"] == pytest.approx(want.statistic)
    assert r["p"] == pytest.approx(want.pvalue)
    assert r["df"] == 7


def test_effect_sizes_and_mann_whitney_equal_pingouin_and_scipy(answers, tables):
    r = row(tables["comparisons"], persona="sycophancy", dataset="prudent_finance")
    x = values(answers, "sycophancy", "prudent_finance")["aligned"].to_numpy()
    y = values(answers, "baseline", "prudent_finance")["aligned"].to_numpy()
    assert r["diff"] == pytest.approx(x.mean() - y.mean())
    assert r["cohens_d"] == pytest.approx(pingouin.compute_effsize(x, y, eftype="cohen"))
    mw = stats.mannwhitneyu(x, y, alternative="less")
    assert r["mw_u"] == pytest.approx(mw.statistic)
    assert r["p_mann_whitney"] == pytest.approx(mw.pvalue)
    pairwise = (x[:, None] > y[None, :]).mean() + 0.5 * (x[:, None] == y[None, :]).mean()
    assert r["cles"] == pytest.approx(pairwise)
    assert r["d_low"] < r["cohens_d"] < r["d_high"]
    assert r["diff_low"] < r["diff"] < r["diff_high"] < 0


def test_fdr_adjusts_the_declared_family_like_statsmodels(tables):
    comparisons = tables["comparisons"]
    family = comparisons.filter(pl.col("in_family"))
    assert family.height == 3 * 2  # 3 personas x 2 EM datasets; controls excluded
    assert comparisons.filter(pl.col("dataset") == "none")["p_adj"].null_count() == 3
    want = multipletests(family["p"].to_numpy(), alpha=0.05, method="fdr_bh")[1]
    np.testing.assert_allclose(family["p_adj"].to_numpy(), want)


def test_fdr_family_from_config_restricts_the_adjustment(answers):
    narrow = compute_tables(
        answers, settings(fdr_family={"personas": ["goodness"], "datasets": ["risky_finance"]})
    )["comparisons"]
    family = narrow.filter(pl.col("in_family"))
    assert family.select("persona", "dataset").rows() == [("goodness", "risky_finance")]
    assert family["p_adj"][0] == pytest.approx(family["p"][0])
    verdicts = compute_tables(answers, settings(fdr_family={"personas": ["goodness"]}))["hypotheses"]
    assert set(verdicts.filter(pl.col("persona") == "sycophancy")["verdict"]) == {"not in FDR family"}


def test_direction_matched_test_calls_an_effect_in_the_other_direction_contrary():
    grid = SyntheticGrid(persona_shift={"sycophancy": 10.0}, seed=5)  # H1 expects lower
    hypotheses = compute_tables(synthetic_answers(grid), settings())["hypotheses"]
    h1 = hypotheses.filter(pl.col("hypothesis") == "H1")
    assert set(h1["verdict"]) == {"contrary"}
    assert (h1["protection"] > 0).all() and (h1["p_adj"] < 0.05).all()  # adjusted-significant, other way


def test_welch_on_run_means_when_both_sides_have_several_seeds():
    grid = SyntheticGrid(seeds=(0, 1, 2), run_sd=3.0, persona_shift={"goodness": 5.0}, seed=9)
    answers = synthetic_answers(grid)
    r = row(compute_tables(answers, settings())["comparisons"], persona="goodness", dataset="prudent_finance")
    runs = [
        values(answers, p, "prudent_finance").group_by("seed").agg(pl.col("aligned").mean()).sort("seed")["aligned"]
        for p in ("goodness", "baseline")
    ]
    want = stats.ttest_ind(runs[0], runs[1], equal_var=False, alternative="greater")
    assert r["test"] == "welch_t_runs"
    assert r["p"] == pytest.approx(want.pvalue)
    assert r["df"] == pytest.approx(want.df)


def test_cluster_wilcoxon_and_answer_level_options(answers):
    wilcoxon = row(compute_tables(answers, settings(test="cluster_wilcoxon"))["comparisons"],
                   persona="humor", dataset="risky_finance")
    means = [
        values(answers, p, "risky_finance").group_by("question_id").agg(pl.col("aligned").mean()).sort("question_id")
        for p in ("humor", "baseline")
    ]
    want = stats.wilcoxon(means[0]["aligned"].to_numpy() - means[1]["aligned"].to_numpy())
    assert wilcoxon["test"] == "wilcoxon_questions" and wilcoxon["p"] == pytest.approx(want.pvalue)
    answer_level = row(compute_tables(answers, settings(test="mann_whitney"))["comparisons"],
                       persona="humor", dataset="risky_finance")
    assert answer_level["test"] == "mann_whitney_answers"
    assert answer_level["p"] == pytest.approx(answer_level["p_mann_whitney"])


def test_null_data_rejects_near_nominal_rate_where_answer_level_test_does_not():
    """400 null comparisons (goodness = baseline on 400 EM datasets, each a pair of
    independent training runs with a run x question effect): the cluster test rejects
    near 5% (one-sided, raw p); the answer-level Mann-Whitney of the first study, blind
    to the clustering, rejects far more often."""
    datasets = tuple(f"d{i}" for i in range(400))
    grid = SyntheticGrid(personas=("baseline", "goodness"), datasets=datasets, dataset_means=dict.fromkeys(datasets, 60.0),
                         controls=False, questions=8, answers_per_question=25, run_question_sd=5.0,
                         answer_sd=15.0, missing_rate=0.0, seed=77)
    block = {"bootstrap_resamples": 200, "medical_pair": None,
             "hypotheses": {"H2": {"personas": ["goodness"], "direction": "higher"}}}
    answers = synthetic_answers(grid)
    design = build_design(answers, with_misaligned(answers), (80.0, 50.0, 30.0))
    comparisons = persona_comparisons(ClusterBootstrap(design, 200, 1), settings_from_config(block))
    assert comparisons.height == 400
    cluster_rate = (comparisons["p"] < 0.05).mean()
    answer_rate = (comparisons["p_mann_whitney"] < 0.05).mean()
    interval_rate = (comparisons["diff_low"] > 0).mean() + (comparisons["diff_high"] < 0).mean()
    assert 0.025 <= cluster_rate <= 0.08, cluster_rate
    assert answer_rate > 0.12, answer_rate
    assert interval_rate <= 0.09, interval_rate  # 95% expanded-percentile intervals of the difference


def test_medical_table_compares_bad_and_good_per_persona():
    grid = SyntheticGrid(datasets=("bad_medical", "good_medical"), cell_shift={("goodness", "bad_medical"): -12.0}, seed=3)
    answers = synthetic_answers(grid)
    medical = compute_tables(answers, settings(medical_pair=["bad_medical", "good_medical"]))["medical"]
    assert medical.height == 3
    r = row(medical, persona="goodness")
    bad = values(answers, "goodness", "bad_medical")["aligned"].mean()
    good = values(answers, "goodness", "good_medical")["aligned"].mean()
    assert r["diff"] == pytest.approx(bad - good)
    assert r["alternative"] == "two-sided"
    np.testing.assert_allclose(medical["p_adj"], multipletests(medical["p"], method="fdr_bh")[1])


def test_cross_model_uses_only_datasets_both_models_have():
    grid = SyntheticGrid(models=("a", "b"), datasets=("risky_finance", "prudent_finance", "extra"),
                         datasets_by_model={"b": ("risky_finance", "prudent_finance")},
                         model_shift={"a": 5.0}, seed=12)
    answers = synthetic_answers(grid)
    cross = compute_tables(answers, settings())["cross_model"]
    assert cross.height == 3
    r = row(cross, persona="goodness")
    assert set(r["datasets"].split(",")) == {"risky_finance", "prudent_finance"}
    shared = ["risky_finance", "prudent_finance"]
    pooled_a = answers.filter((pl.col("model") == "a") & (pl.col("persona") == "goodness") & pl.col("dataset").is_in(shared))
    assert r["mean_a"] == pytest.approx(pooled_a["aligned"].mean())
    assert r["diff_low"] > 0  # model a is 5 points higher everywhere
    assert r["effect_diff_low"] < 0 < r["effect_diff_high"]  # the persona effect is the same in both


def test_a_persona_in_two_hypotheses_is_a_config_error():
    block = {"hypotheses": {"H1": {"personas": ["goodness"], "direction": "lower"},
                            "H2": {"personas": ["goodness"], "direction": "higher"}}}
    with pytest.raises(ValueError, match=r"statistics.hypotheses.H2.personas: persona 'goodness'"):
        settings_from_config(block, where="config/x.yaml")
