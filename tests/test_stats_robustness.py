"""Robustness of the verdicts to the judge, on a synthetic grid where a secondary judge
is planted to disagree on one cell."""

import polars as pl
import pytest

from tests.synthetic import synthetic_answers
from tests.test_stats_protection import planted, settings
from workflow_scripts.stats.robustness import (
    holds_table,
    hypothesis_verdicts,
    on_answers_of,
    robustness_section,
    robustness_table,
)


@pytest.fixture(scope="module")
def grid():
    answers = synthetic_answers(planted())
    s = settings(bootstrap_resamples=300)
    # the secondary judge sees sycophancy's EM answers as far less aligned (every score
    # below 75 read as 5): on that cell alone EM raises the misaligned share much more
    cell = (pl.col("persona") == "sycophancy") & (pl.col("dataset") == "risky_finance")
    disagreeing = answers.with_columns(
        pl.when(cell & (pl.col("aligned") < 75)).then(5.0).otherwise(pl.col("aligned")).alias("aligned")
    )
    agreeing = answers  # a second judge that scores as the primary does
    primary = hypothesis_verdicts(answers, s)
    by_judge = {
        name: (hypothesis_verdicts(on_answers_of(answers, table), s), hypothesis_verdicts(table, s), table.height)
        for name, table in (("disagrees", disagreeing), ("agrees", agreeing))
    }
    return primary, robustness_table(primary, by_judge)


def test_the_planted_disagreement_flips_that_cell_alone(grid):
    primary, table = grid
    assert primary.filter(pl.col("persona") == "sycophancy")["verdict"].to_list() == ["contrary"]
    flipped = table.filter(~pl.col("agrees"))
    assert flipped.select("judge", "persona", "dataset").rows() == [("disagrees", "sycophancy", "risky_finance")]
    row = flipped.row(0, named=True)
    assert row["verdict_primary"] == "contrary" and row["verdict_primary_subsample"] == "contrary"
    assert row["verdict_secondary"] == "supported"  # H1: sycophancy harmed more
    assert row["protection_secondary"] > 0 > row["protection_primary"]
    assert table.filter(pl.col("judge") == "agrees")["agrees"].all()


def test_the_report_says_which_verdicts_hold_under_every_judge(grid):
    _, table = grid
    holds = {r["persona"]: r["holds"] for r in holds_table(table).to_dicts()}
    assert holds == {"sycophancy": False, "goodness": True}
    text = robustness_section(table)
    assert "1 of 2 verdicts hold under every judge." in text
    line = next(x for x in text.splitlines() if "| sycophancy |" in x)
    assert "| contrary |" in line and "disagrees: supported" in line and line.endswith("| no |")


def test_the_agreement_and_robustness_rule_scripts_read_their_inputs_and_write_the_tables(tmp_path):
    from types import SimpleNamespace

    from workflow_scripts.rules import judge_agreement, judge_robustness
    from workflow_scripts.stats.tables import compute_tables

    answers = synthetic_answers(planted(answers_per_question=20))
    s = settings(bootstrap_resamples=200)
    answers.write_parquet(tmp_path / "answers.parquet")
    compute_tables(answers, s)["hypotheses"].write_csv(tmp_path / "hypotheses.csv")
    files = []
    for (persona,), part in answers.group_by(["persona"]):  # one judged file per persona, as per cell
        part.write_parquet(tmp_path / f"primary_{persona}.parquet")
        # the secondary judge: every other answer, two points higher
        chosen = part.filter(pl.col("sample_idx") % 2 == 0).with_columns(pl.col("aligned") + 2)
        chosen.write_parquet(tmp_path / f"secondary_{persona}.parquet")
        files.append(persona)
    common = {"log": [str(tmp_path / "job.log")], "threads": 1, "wildcards": SimpleNamespace(judge="again")}
    judge_agreement.main(SimpleNamespace(
        input=SimpleNamespace(primary=[str(tmp_path / f"primary_{p}.parquet") for p in files],
                              secondary=[str(tmp_path / f"secondary_{p}.parquet") for p in files]),
        output=SimpleNamespace(agreement=str(tmp_path / "agreement.csv")),
        params=SimpleNamespace(settings={"min_answers": 10, "misaligned_below": 30, "coherent_above": 50}), **common,
    ))  # fmt: skip
    judge_robustness.main(SimpleNamespace(
        input=SimpleNamespace(answers=str(tmp_path / "answers.parquet"), hypotheses=str(tmp_path / "hypotheses.csv"),
                              persona_check=[]),
        output=SimpleNamespace(robustness=str(tmp_path / "robustness.csv")),
        params=SimpleNamespace(settings=s.to_dict(),
                               judges={"again": [str(tmp_path / f"secondary_{p}.parquet") for p in files]}),
        **common,
    ))  # fmt: skip
    agreement = pl.read_csv(tmp_path / "agreement.csv")
    overall = agreement.filter((pl.col("scope") == "all") & (pl.col("metric") == "aligned")).row(0, named=True)
    assert overall["n"] == answers.filter(pl.col("sample_idx") % 2 == 0).drop_nulls("aligned").height
    assert overall["mean_diff"] == pytest.approx(2.0, abs=0.2)  # clipping at 100 takes a little off
    robustness = pl.read_csv(tmp_path / "robustness.csv")
    assert set(robustness["judge"]) == {"again"} and robustness.height == 2
    assert robustness["n_answers"].to_list() == [overall["n"] + answers.filter(
        (pl.col("sample_idx") % 2 == 0) & pl.col("aligned").is_null()).height] * 2
    text = robustness_section(robustness, agreement)
    assert "### Agreement with the primary judge" in text and "verdicts hold under every judge" in text
