"""The "Reproduction" section on the fixture: both methods and their verdicts."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest

from workflow_scripts.first_study.importer import ImportSettings, read_judge_runs
from workflow_scripts.first_study.reproduction import hypothesis_summary, markdown_table, reproduce

GOOD = Path(__file__).parent / "data" / "first_study_fixture" / "good"
STATISTICS = {
    "bootstrap_resamples": 200,
    "hypotheses": {"H2": {"personas": ["goodness"], "direction": "higher"}},
}


@pytest.fixture(scope="module", params=["largest_run", "all_runs"])
def result(request):
    runs = read_judge_runs(
        GOOD, ImportSettings(persona_aliases={"constitutional_goodness_meta": "goodness_meta"})
    )
    return reproduce(
        runs, STATISTICS, policy=request.param, first_study_resamples=200
    ), request.param


def test_section_has_every_part(result):
    reproduction, policy = result
    text = reproduction.markdown
    assert text.startswith("## Reproduction of the first study\n")
    for heading in (
        "### Where the conclusions change",
        "### Alignment by persona, first study's method",
        "### Hypothesis cells: first study's call vs the corrected test",
        "### Pooled means vs means over common datasets",
        "### Persona effect per dataset",
        "### Judge reliability (conditions judged more than once)",
    ):
        assert heading in text
    assert f"Policy `{policy}` keeps {36 if policy == 'largest_run' else 48} answers" in text


def test_first_study_table_uses_the_largest_run_whatever_the_policy(result):
    reproduction, _ = result
    baseline = reproduction.persona_table.filter(
        (pl.col("model") == "qwen2.5-7b") & (pl.col("persona") == "baseline")
    ).row(0, named=True)
    # insecure run 1 (6 scored) + bad_medical (5 scored)
    assert baseline["n"] == 11 and baseline["datasets"] == 2
    assert baseline["mean"] == pytest.approx((360 + 270) / 11)


def test_goodness_cells_are_called_by_both_methods(result):
    reproduction, policy = result
    cells = reproduction.comparisons.filter(pl.col("persona") == "goodness").sort("dataset")
    assert cells["dataset"].to_list() == ["bad_medical", "insecure"]
    bad_medical = cells.row(0, named=True)
    assert bad_medical["difference"] == pytest.approx(90.0 - 270 / 5)
    assert bad_medical["first_study_call"] == "supports" and bad_medical["supports"] is True
    insecure = cells.row(1, named=True)
    expected_reference = 360 / 6 if policy == "largest_run" else (90 + 22.5 + 85 + 60 + 10 + 95) / 6
    assert insecure["difference"] == pytest.approx(547 / 6 - expected_reference)
    assert insecure["p"] == pytest.approx(0.062, abs=0.001) and insecure["supports"] is False
    summary = hypothesis_summary(reproduction.comparisons, STATISTICS["hypotheses"]).row(
        0, named=True
    )
    assert (summary["corrected_supports"], summary["corrected_verdict"]) == (1, "MIXED")


def test_reliability_is_reported_for_both_policies(result):
    reproduction, _ = result
    assert reproduction.reliability.filter(pl.col("dataset") == "insecure").height == 4
    assert "| qwen2.5-7b | baseline | insecure | aligned | 2 |" in reproduction.markdown


def test_markdown_table_layout():
    assert markdown_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |", ""]
