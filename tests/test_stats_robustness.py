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
