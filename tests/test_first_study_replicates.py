"""Judge replicates of the first study (policy all_runs) are repeated measurements of
one answer: averaged per answer before any estimate, so the two policies agree on every
condition judged once. Runs on the fixture, and on the real archive where present."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from workflow_scripts.first_study.importer import ImportSettings, apply_policy, read_judge_runs
from workflow_scripts.stats.answers import ONE_ANSWER, one_judgement_per_answer
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables

GOOD = Path(__file__).parent / "data" / "first_study_fixture" / "good"


def per_answer_means(runs: pl.DataFrame, policy: str) -> pl.DataFrame:
    answers = apply_policy(runs, policy).select(
        *ONE_ANSWER,
        "aligned",
        "coherent",
        "aligned_special",
        "coherent_special",
        "judge_run",
        "runs_of_condition",
    )
    return one_judgement_per_answer(answers).sort(ONE_ANSWER)


def assert_policies_agree_where_judged_once(runs: pl.DataFrame) -> None:
    largest = per_answer_means(runs, "largest_run")
    every = per_answer_means(runs, "all_runs")
    assert every.select(ONE_ANSWER).equals(largest.select(ONE_ANSWER))  # no answer added
    once = pl.col("runs_of_condition") == 1
    columns = ["aligned", "coherent", "aligned_special", "coherent_special"]
    assert every.filter(once).select(columns).equals(largest.filter(once).select(columns))


def test_replicates_become_one_answer_with_the_mean_score():
    runs = read_judge_runs(GOOD, ImportSettings())
    every = per_answer_means(runs, "all_runs")
    qwen = every.filter(
        (pl.col("model") == "qwen2.5-7b")
        & (pl.col("persona") == "baseline")
        & (pl.col("dataset") == "insecure")
    )
    assert qwen.height == 6
    by_answer = {(r["question_id"], r["sample_idx"]): r for r in qwen.iter_rows(named=True)}
    scores = sorted(r["aligned"] for r in by_answer.values())
    # run 1: 90 20 85 | 60 10 95; run 2: 90 25 85 | 60 REFUSAL 95 -> 22.5 averaged,
    # 10 kept alone (the REFUSAL is no score)
    assert scores == [10.0, 22.5, 60.0, 85.0, 90.0, 95.0]
    assert all(";" in r["judge_run"] for r in by_answer.values())


def test_largest_run_and_all_runs_agree_on_answers_judged_once():
    assert_policies_agree_where_judged_once(read_judge_runs(GOOD, ImportSettings()))


def test_condition_means_of_conditions_judged_once_do_not_move_under_all_runs():
    runs = read_judge_runs(GOOD, ImportSettings())
    settings = settings_from_config(
        {"bootstrap_resamples": 50, "hypotheses": {}, "medical_pair": None},
        personas=["baseline", "goodness", "constitutional_goodness_meta"],
    )
    means = {}
    for policy in ("largest_run", "all_runs"):
        conditions = compute_tables(apply_policy(runs, policy), settings)["conditions"]
        means[policy] = conditions.select("model", "persona", "dataset", "n_answers", "mean")
    once = (
        runs.filter(pl.col("runs_of_condition") == 1).select("model", "persona", "dataset").unique()
    )
    a, b = (
        means[p].join(once, on=["model", "persona", "dataset"]).sort("model", "persona", "dataset")
        for p in ("largest_run", "all_runs")
    )
    assert a.height == 4 and a.equals(b)
    # a condition judged twice has as many answers under both policies
    assert means["all_runs"]["n_answers"].to_list() == means["largest_run"]["n_answers"].to_list()


def test_a_table_without_replicates_is_returned_unchanged():
    runs = apply_policy(read_judge_runs(GOOD, ImportSettings()), "largest_run")
    assert one_judgement_per_answer(runs) is runs


def test_every_run_missing_keeps_the_first_reason():
    answers = pl.DataFrame(
        {
            "model": ["m", "m"],
            "persona": ["p", "p"],
            "dataset": ["d", "d"],
            "seed": [0, 0],
            "question_id": ["q", "q"],
            "sample_idx": [0, 0],
            "aligned": [None, None],
            "coherent": [40.0, 60.0],
            "aligned_special": ["REFUSAL", "CODE"],
            "coherent_special": [None, None],
            "judge_run": ["a", "b"],
        },
        schema_overrides={"aligned": pl.Float64},
    )
    row = one_judgement_per_answer(answers).row(0, named=True)
    assert row["aligned"] is None and row["aligned_special"] == "REFUSAL"
    assert row["coherent"] == 50.0 and row["coherent_special"] is None
