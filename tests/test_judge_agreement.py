"""Secondary judges: the stratified subsample and the agreement statistics, on
constructed tables with known values."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.agreement import (
    agreement_table,
    cohens_kappa,
    metric_agreement,
    paired,
)
from workflow_scripts.judging.secondary import secondary_judges
from workflow_scripts.judging.subsample import LOW, REST, Subsample, choose, stratum_counts


def _judged(conditions: dict[tuple[str, str], list[float | None]], coherent: float = 80.0) -> pl.DataFrame:
    rows = []
    for (persona, dataset), scores in conditions.items():
        for i, score in enumerate(scores):
            rows.append({"model": "m", "persona": persona, "dataset": dataset, "seed": 0,
                         "question_id": f"q{i % 4}", "sample_idx": i // 4, "aligned": score, "coherent": coherent})
    return pl.DataFrame(rows, schema_overrides={"aligned": pl.Float64, "coherent": pl.Float64})


def test_the_subsample_covers_every_condition_and_oversamples_low_scores():
    scores = [float(s) for s in np.linspace(0, 100, 40)]  # 12 of 40 below 30
    table = _judged({("baseline", "none"): scores, ("baseline", "insecure"): scores,
                     ("goodness", "insecure"): [90.0] * 40, ("goodness", "none"): [95.0]})
    spec = Subsample(share=0.1, low_score_below=30, low_score_weight=3, seed=7)
    chosen = choose(table, spec)
    counts = {(r["persona"], r["dataset"], r["stratum"]): (r["answers"], r["chosen"])
              for r in stratum_counts(table, chosen, 30)}
    assert counts[("baseline", "none", LOW)] == (12, math.ceil(0.3 * 12))
    assert counts[("baseline", "none", REST)] == (28, math.ceil(0.1 * 28))
    assert counts[("goodness", "insecure", REST)] == (40, 4)
    assert counts[("goodness", "none", REST)] == (1, 1)  # every condition, however small
    assert set(chosen.select("persona", "dataset").unique().iter_rows()) == set(
        table.select("persona", "dataset").unique().iter_rows()
    )
    low = chosen.filter(pl.col("stratum") == LOW)
    assert low["aligned"].max() < 30


def test_the_subsample_is_deterministic_nested_and_seeded():
    table = _judged({("baseline", "none"): [float(s) for s in range(100)]})
    small = choose(table, Subsample(share=0.1, seed=1))
    assert small.equals(choose(table, Subsample(share=0.1, seed=1)))
    large = choose(table, Subsample(share=0.3, seed=1))
    key = ["question_id", "sample_idx"]
    assert small.join(large, on=key, how="anti").height == 0  # chosen at 0.1 stays chosen at 0.3
    other = choose(table, Subsample(share=0.1, seed=2))
    assert not small.select(key).equals(other.select(key))
    assert choose(table, Subsample(share=1.0)).height == 100


def test_a_bad_subsample_names_the_key():
    with pytest.raises(InputError, match=r"judges.secondary.x.subsample: unknown key\(s\) shares"):
        Subsample.from_config({"shares": 0.1}, "judges.secondary.x.subsample")


def test_secondary_judges_merge_the_common_subsample_with_their_own():
    config = {"judges": {"subsample": {"share": 0.2, "seed": 3},
                         "secondary": {"b": {"judge": {"kind": "local", "model": "m"}, "subsample": {"share": 0.5}}}}}
    judge = secondary_judges(config)["b"]
    assert (judge.subsample.share, judge.subsample.seed) == (0.5, 3)
    assert judge.settings().kind == "local"


def test_metric_agreement_equals_the_hand_computation():
    a, b = [10, 20, 30, 40, 50], [18, 12, 35, 40, 60]
    out = metric_agreement(a, b)
    diffs = [8, -8, 5, 0, 10]  # mean 3, squared deviations 25 + 121 + 4 + 9 + 49 = 208
    assert out["n"] == 5 and out["mean_diff"] == pytest.approx(3.0)
    assert out["sd_diff"] == pytest.approx(math.sqrt(208 / 4))
    assert (out["loa_low"], out["loa_high"]) == pytest.approx((3 - 1.96 * math.sqrt(52), 3 + 1.96 * math.sqrt(52)))
    assert out["spearman"] == pytest.approx(1 - 6 * 2 / (5 * 24))  # ranks differ by 1 on two answers
    values = a + b  # interval alpha, 2 coders: 1 - D_o / D_e
    d_o = 2 * sum(d * d for d in diffs) / len(values)
    d_e = 2 * (len(values) * sum(v * v for v in values) - sum(values) ** 2) / (len(values) * (len(values) - 1))
    assert out["krippendorff_alpha"] == pytest.approx(1 - d_o / d_e)


def test_cohens_kappa_equals_the_hand_computation():
    out = cohens_kappa([True, True, False, False, False, False], [True, False, False, False, False, True])
    # observed 4/6; chance 1/3 * 1/3 + 2/3 * 2/3 = 5/9; kappa (4/6 - 5/9) / (4/9) = 0.25
    assert out["kappa"] == pytest.approx(0.25) and out["agreement"] == pytest.approx(4 / 6)
    assert (out["n_misaligned_primary"], out["n_misaligned_secondary"]) == (2, 2)
    assert cohens_kappa([False] * 3, [False] * 3)["kappa"] is None  # chance agreement 1: undefined


def test_agreement_table_has_every_metric_overall_and_per_condition_with_enough_answers():
    primary = _judged({("baseline", "none"): [10, 20, 30, 40, 50, 60], ("goodness", "none"): [10, 90]})
    secondary = primary.with_columns((pl.col("aligned") + 5).alias("aligned"))
    table = agreement_table(paired(primary, secondary.head(7)), "b", min_answers=3)
    overall = {r["metric"]: r for r in table.filter(pl.col("scope") == "all").to_dicts()}
    assert overall["aligned"]["n"] == 7 and overall["aligned"]["mean_diff"] == pytest.approx(5.0)
    assert overall["aligned"]["spearman"] == pytest.approx(1.0)
    assert overall["coherent"]["mean_diff"] == pytest.approx(0.0)
    assert overall["misaligned"]["n_misaligned_primary"] == 3  # 10, 20 and 10 are below 30
    assert overall["misaligned"]["n_misaligned_secondary"] == 3  # 15, 25 and 15
    per = table.filter(pl.col("scope") == "condition")
    assert set(per["persona"]) == {"baseline"}  # goodness has 1 pair of 2 answers < 3
    assert per.height == 3


def test_the_interval_alpha_is_krippendorffs_on_continuous_scores():
    import krippendorff

    rng = np.random.default_rng(0)
    a = rng.uniform(0, 100, 60)
    b = np.clip(a + rng.normal(0, 15, 60), 0, 100)
    expected = krippendorff.alpha(reliability_data=np.vstack([a, b]), level_of_measurement="interval")
    assert metric_agreement(a, b)["krippendorff_alpha"] == pytest.approx(expected)
