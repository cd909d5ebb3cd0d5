"""The first study's own method, re-implemented to reproduce its tables."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import polars as pl
import pytest
from scipy import stats

from workflow_scripts.first_study import method as first
from workflow_scripts.first_study.importer import ImportSettings, read_judge_runs

GOOD = Path(__file__).parent / "data" / "first_study_fixture" / "good"

QUESTIONS = [f"q{i}" for i in range(8)]


def answers_frame(cells: dict[tuple[str, str, str], list[list[float]]]) -> pl.DataFrame:
    """(model, persona, dataset) -> per question, its answers' alignment scores."""
    rows = []
    for (model, persona, dataset), per_question in cells.items():
        for question, scores in zip(QUESTIONS, per_question, strict=False):
            for idx, score in enumerate(scores):
                rows.append(
                    {
                        "model": model,
                        "persona": persona,
                        "dataset": dataset,
                        "seed": 0,
                        "question_id": question,
                        "sample_idx": idx,
                        "aligned": score,
                        "coherent": 90.0,
                    }
                )
    return pl.DataFrame(rows)


# ---------------------------------------------------------------- first study's method
def test_percentile_bootstrap_draws_the_first_studys_random_stream():
    scores = np.random.default_rng(3).integers(0, 101, 257).astype(float)
    rng = np.random.default_rng(42)
    loop = np.array(
        [np.mean(rng.choice(scores, size=scores.size, replace=True)) for _ in range(300)]
    )
    expected = (float(np.percentile(loop, 2.5)), float(np.percentile(loop, 97.5)))
    assert first.percentile_bootstrap(scores, resamples=300, chunk=7) == expected


def test_t_interval_is_the_textbook_interval():
    scores = np.array([1.0, 2.0, 3.0, 4.0])
    low, high = first.t_interval(scores)
    half = stats.t.ppf(0.975, 3) * scores.std(ddof=1) / 2
    assert (low, high) == pytest.approx((2.5 - half, 2.5 + half))


def test_persona_table_pools_a_persona_over_its_datasets():
    frame = answers_frame(
        {
            ("m", "baseline", "a"): [[10.0, 20.0]],
            ("m", "baseline", "b"): [[30.0, None]],
            ("m", "goodness", "a"): [[50.0]],
        }
    )
    table = first.persona_table(frame, resamples=200)
    baseline = table.filter(pl.col("persona") == "baseline").row(0, named=True)
    assert baseline["n"] == 3 and baseline["datasets"] == 2
    assert baseline["mean"] == pytest.approx(20.0) and baseline["sd"] == pytest.approx(10.0)


def test_with_published_flags_a_mismatch():
    table = pl.DataFrame(
        {
            "model": ["llama3.1-8b", "llama3.1-8b", "llama3.1-8b"],
            "persona": ["goodness", "sarcasm", "humor"],
            "n": [1600, 1600, 1599],
            "mean": [96.18, 66.6, 93.9],
            "sd": [3.43, 25.7, 5.5],
        }
    )
    flagged = first.with_published(table).sort("persona")
    assert flagged["matches_published"].to_list() == [True, None, False]


def test_persona_vs_reference_is_two_sided_and_adjusts_over_all_cells():
    frame = answers_frame(
        {
            ("m", "baseline", "a"): [[50.0, 60.0, 70.0, 80.0, 90.0]],
            ("m", "sycophancy", "a"): [[10.0, 20.0, 30.0, 40.0, 55.0]],
            ("m", "goodness", "a"): [[52.0, 61.0, 69.0, 81.0, 88.0]],
        }
    )
    tests = first.persona_vs_reference(frame).sort("persona")
    expected = stats.mannwhitneyu(
        [10.0, 20.0, 30.0, 40.0, 55.0], [50.0, 60.0, 70.0, 80.0, 90.0], alternative="two-sided"
    ).pvalue
    syc = tests.filter(pl.col("persona") == "sycophancy").row(0, named=True)
    assert syc["p_two_sided"] == pytest.approx(expected)
    assert syc["difference"] == pytest.approx(-39.0)
    assert syc["p_bh_all_cells"] == pytest.approx(min(1.0, expected * 2))


@pytest.mark.parametrize(
    ("difference", "p", "direction", "call"),
    [
        (-3.0, 0.01, "lower", "supports"),
        (3.0, 0.01, "lower", "opposite"),
        (-3.0, 0.2, "lower", "n.s."),
        (2.0, 0.049, "higher", "supports"),
    ],
)
def test_cell_call_uses_the_uncorrected_p_and_the_sign(difference, p, direction, call):
    assert first.cell_call(difference, p, direction) == call


def test_verdict_is_the_majority_rule():
    assert [first.verdict(s, 4) for s in (3, 2, 0)] == ["SUPPORTED", "MIXED", "NOT SUPPORTED"]


def test_first_study_view_keeps_persona_only_runs_apart_from_em_conditions():
    runs = read_judge_runs(
        GOOD, ImportSettings(persona_aliases={"constitutional_goodness_meta": "goodness"})
    )
    seen = first.as_first_study_saw_it(runs)
    table = first.persona_table(seen, resamples=50)
    goodness = table.filter(pl.col("persona") == "goodness").row(0, named=True)
    persona_only = table.filter(pl.col("persona") == "constitutional_goodness_meta").row(
        0, named=True
    )
    # goodness: insecure (6) + bad_medical (6) EM answers only; the persona-only run
    # (6 answers, labelled `insecure` by its file) stays a row of its own
    assert (goodness["n"], goodness["no_em"]) == (12, False)
    assert (persona_only["n"], persona_only["no_em"]) == (6, True)
