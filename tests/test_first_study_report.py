"""The "Reproduction" section and the import's RESULTS.md on the fixture: the first
study's method beside the workflow's statistics, every number of the findings a cell
of its source row."""

from __future__ import annotations

import re
from pathlib import Path

import polars as pl
import pytest

from tests.report_check import check_findings
from workflow_scripts.first_study.importer import ImportSettings, apply_policy, read_judge_runs
from workflow_scripts.first_study.outputs import FILES
from workflow_scripts.first_study.reproduction import markdown_table, reproduce
from workflow_scripts.stats.report import render_results
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables

GOOD = Path(__file__).parent / "data" / "first_study_fixture" / "good"
ALIASES = {"constitutional_goodness_meta": "goodness_meta"}


def settings():
    return settings_from_config(
        {
            "bootstrap_resamples": 200,
            "hypotheses": {"H2": {"personas": ["goodness"], "direction": "higher"}},
            "medical_pair": None,
            "fdr_family": {"personas": ["goodness"], "datasets": None},
        },
        personas=["baseline", "goodness", "goodness_meta"],
        datasets=["insecure", "bad_medical"],
    )


@pytest.fixture(scope="module", params=["largest_run", "all_runs"])
def result(request):
    runs = read_judge_runs(GOOD, ImportSettings(persona_aliases=ALIASES))
    answers = apply_policy(runs, request.param)
    s = settings()
    tables = compute_tables(answers, s)
    reproduction = reproduce(
        runs, answers, tables, s, policy=request.param, first_study_resamples=200
    )
    return reproduction, tables, s, request.param


def test_section_has_every_part_and_nothing_called_corrected(result):
    reproduction, _, _, policy = result
    text = reproduction.markdown
    assert text.startswith("## Reproduction of the first study\n")
    for heading in (
        "### What this data cannot show",
        "### Answers per condition",
        "### Where the conclusions change",
        "### Alignment by persona, first study's method",
        "### Hypothesis cells: the first study's call beside this workflow's statistics",
        "### Pooled means vs means over common datasets",
        "### Persona effect: do the personas differ from each other?",
        "### Judge reliability (conditions judged more than once)",
    ):
        assert heading in text
    assert re.search(r"\bcorrected\b", text, re.IGNORECASE) is None
    assert (
        "A known defect of the first study" in text and "inactive while the EM LoRA trained" in text
    )
    kept = 36 if policy == "largest_run" else 48
    assert f"Policy `{policy}` keeps {kept} judgements of 36 answers" in text
    assert set(reproduction.tables) == set(FILES)


def test_first_study_table_uses_the_largest_run_whatever_the_policy(result):
    reproduction, *_ = result
    baseline = (
        reproduction.tables["persona_table"]
        .filter((pl.col("model") == "qwen2.5-7b") & (pl.col("persona") == "baseline"))
        .row(0, named=True)
    )
    assert baseline["n"] == 11 and baseline["datasets"] == 2  # insecure run 1 + bad_medical
    assert baseline["mean"] == pytest.approx((360 + 270) / 11)


def test_hypothesis_cells_set_the_first_study_beside_the_workflow_levels(result):
    reproduction, tables, _, policy = result
    cells = reproduction.tables["hypothesis_cells"].sort("dataset")
    assert cells["dataset"].to_list() == ["bad_medical", "insecure"]
    bad_medical = cells.row(0, named=True)
    assert bad_medical["first_study_difference"] == pytest.approx(90.0 - 270 / 5)
    assert bad_medical["first_study_call"] == "supports"
    level = (
        tables["comparisons"]
        .filter((pl.col("persona") == "goodness") & (pl.col("dataset") == "bad_medical"))
        .row(0, named=True)
    )
    assert bad_medical["level_diff"] == pytest.approx(level["diff"])
    assert bad_medical["level_p_adj"] == pytest.approx(level["p_adj"])
    assert bad_medical["protection"] is None  # no model without EM in the fixture
    insecure = cells.row(1, named=True)
    # judge replicates averaged per answer under all_runs: 22.5 for the answer scored 20 / 25
    reference = 360 / 6 if policy == "largest_run" else (90 + 22.5 + 85 + 60 + 10 + 95) / 6
    assert insecure["level_diff"] == pytest.approx(547 / 6 - reference)
    overview = reproduction.tables["hypotheses"].row(0, named=True)
    assert overview["protection_estimates"] == 0 and overview["first_study_verdict"] == "MIXED"


def test_findings_of_the_import_are_cells_of_their_source_rows(result):
    reproduction, tables, s, _ = result
    text = render_results(
        tables, s, extra=reproduction.markdown, extra_findings=reproduction.findings
    )
    every = {**tables, **{FILES[name]: t for name, t in reproduction.tables.items()}}
    assert check_findings(text, every) == []
    findings = text[text.index("## Findings") : text.index("## Data")]
    assert "no protection estimate, hence no verdict" in findings
    assert "first study's method calls it MIXED" in findings


def test_reliability_is_reported_for_both_policies(result):
    reproduction, *_ = result
    reliability = reproduction.tables["reliability"]
    assert reliability.filter(pl.col("dataset") == "insecure").height == 4
    assert "| qwen2.5-7b | baseline | insecure | aligned | 2 |" in reproduction.markdown


def test_markdown_table_layout():
    assert markdown_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |", ""]
