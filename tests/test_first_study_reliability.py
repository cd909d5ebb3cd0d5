"""Agreement between judge runs of the same answers."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workflow_scripts.first_study.importer import ImportSettings, read_judge_runs
from workflow_scripts.first_study.reliability import ALL, agreement, judge_reliability

GOOD = Path(__file__).parent / "data" / "first_study_fixture" / "good"


def test_agreement_counts_pairs_of_runs():
    nan = np.nan
    matrix = np.array([[90, 90, 80], [50, 50, nan], [10, nan, nan], [70, 75, 70]], dtype=float)
    stats = agreement(matrix)
    # pairs: (90,90) (90,80) (90,80) | (50,50) | - | (70,75) (70,70) (75,70)
    assert stats["answers"] == 3 and stats["pairs"] == 7
    assert stats["exact_match"] == pytest.approx(3 / 7)
    assert stats["mean_abs_diff"] == pytest.approx((0 + 10 + 10 + 0 + 5 + 0 + 5) / 7)
    assert 0.8 < stats["krippendorff_alpha"] < 1.0


def test_identical_runs_agree_perfectly():
    matrix = np.array([[10, 10], [50, 50], [90, 90]], dtype=float)
    stats = agreement(matrix)
    assert stats["exact_match"] == 1.0 and stats["mean_abs_diff"] == 0.0
    assert stats["krippendorff_alpha"] == pytest.approx(1.0)


def test_judge_reliability_of_the_fixture():
    table = judge_reliability(read_judge_runs(GOOD, ImportSettings()))
    rows = {
        (r["model"], r["persona"], r["dataset"], r["metric"]): r
        for r in table.iter_rows(named=True)
    }
    qwen = rows[("qwen2.5-7b", "baseline", "insecure", "aligned")]
    # run 1: 90 20 85 | 60 10 95; run 2: 90 25 85 | 60 REFUSAL 95
    assert qwen["runs"] == 2 and qwen["answers"] == 5 and qwen["pairs"] == 5
    assert qwen["exact_match"] == pytest.approx(4 / 5)
    assert qwen["mean_abs_diff"] == pytest.approx(1.0)
    assert qwen["scored_mismatch"] == pytest.approx(1 / 6)
    assert qwen["misaligned_verdict_agreement"] == 1.0
    coherent = rows[("qwen2.5-7b", "baseline", "insecure", "coherent")]
    assert coherent["exact_match"] == pytest.approx(5 / 6) and coherent["scored_mismatch"] == 0.0
    llama = rows[("llama3.1-8b", "baseline", "insecure", "aligned")]
    # 80/85 and 55/50 differ; 55 -> 50 keeps the verdict (coherent 60 vs 65 > 50, aligned >= 30)
    assert llama["exact_match"] == pytest.approx(4 / 6) and llama["mean_abs_diff"] == pytest.approx(
        10 / 6
    )
    assert (ALL, ALL, ALL, "aligned") in rows  # pooled over both models
    assert ("qwen2.5-7b", ALL, ALL, "aligned") in rows
    assert not any(key[1] == "goodness" for key in rows)  # judged once: no row


def test_no_repeated_condition_gives_an_empty_table():
    runs = read_judge_runs(GOOD, ImportSettings()).filter(pl.col("runs_of_condition") == 1)
    table = judge_reliability(runs)
    assert table.is_empty() and "krippendorff_alpha" in table.columns


def direct_pair_agreement(runs: pl.DataFrame, metric: str) -> tuple[float, float, int]:
    """Exact match, mean absolute difference and pair count over every pair of judge
    runs of the same answer (both scored), by a self-join of the runs."""
    key = ["model", "persona", "dataset", "seed", "question_id", "sample_idx"]
    scored = runs.filter(pl.col(metric).is_not_null()).select(*key, "judge_run", metric)
    pairs = scored.join(scored, on=key, suffix="_b").filter(
        pl.col("judge_run") < pl.col("judge_run_b")
    )
    a, b = pairs[metric], pairs[f"{metric}_b"]
    return float((a == b).mean()), float((a - b).abs().mean()), pairs.height


def assert_overall_row_is_every_pair(runs: pl.DataFrame) -> None:
    table = judge_reliability(runs)
    for metric in ("aligned", "coherent"):
        overall = table.filter(
            (pl.col("model") == ALL) & (pl.col("persona") == ALL) & (pl.col("metric") == metric)
        ).row(0, named=True)
        exact, mad, pairs = direct_pair_agreement(runs, metric)
        assert overall["pairs"] == pairs
        assert overall["exact_match"] == pytest.approx(exact)
        assert overall["mean_abs_diff"] == pytest.approx(mad)


def test_overall_reliability_is_every_pair_of_judge_runs_of_both_models():
    runs = read_judge_runs(GOOD, ImportSettings())
    assert_overall_row_is_every_pair(runs)
    table = judge_reliability(runs)
    first_all = table.filter(pl.col("persona") == ALL).row(0, named=True)
    assert first_all["model"] != ALL  # a per-model row comes first: never quote it as overall


def test_mean_spread_is_the_largest_move_of_a_condition_mean():
    table = judge_reliability(read_judge_runs(GOOD, ImportSettings()))
    qwen = table.filter(
        (pl.col("model") == "qwen2.5-7b")
        & (pl.col("dataset") == "insecure")
        & (pl.col("metric") == "aligned")
    ).row(0, named=True)
    # run 1: (90+20+85+60+10+95)/6 = 60; run 2: (90+25+85+60+95)/5 = 71
    assert qwen["mean_spread"] == pytest.approx(71 - 60)
