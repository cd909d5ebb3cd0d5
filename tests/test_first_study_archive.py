"""The first study's real archive: the import reproduces its published per-persona
table. Skipped (saying why) where the shared data are absent; CI has `../shared`
beside the clone."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path

import polars as pl
import pytest

from workflow_scripts.first_study.importer import ImportSettings, apply_policy, read_judge_runs
from workflow_scripts.first_study.method import (
    PUBLISHED_PERSONA_TABLE,
    as_first_study_saw_it,
    persona_table,
    with_published,
)

ARCHIVE_NAME = "first-study-gpt41mini-evals.tar.xz"
REPO = Path(__file__).resolve().parents[1]
SHARED_DATA_DIRS = [
    *filter(None, [os.environ.get("PERSONA_EM_SHARED_DATA")]),
    REPO.parent / "shared" / "data",  # CI and /work/main: ../shared beside the clone
    Path("/work/shared/data"),  # worktrees of the development machine
]
CANDIDATES = [Path(d) / ARCHIVE_NAME for d in SHARED_DATA_DIRS]
ARCHIVE = next((path for path in CANDIDATES if path.exists()), None)

pytestmark = pytest.mark.skipif(
    ARCHIVE is None,
    reason=f"first-study archive not found (looked for {', '.join(map(str, CANDIDATES))})",
)


@pytest.fixture(scope="module")
def unpacked(tmp_path_factory) -> Path:
    """The archive unpacked into a temporary directory."""
    directory = tmp_path_factory.mktemp("first-study")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(directory, filter="data")
    return directory


@pytest.fixture(scope="module")
def runs(unpacked) -> pl.DataFrame:
    """Every judge run, imported with the importer's defaults."""
    return read_judge_runs(unpacked, ImportSettings())


def test_archive_holds_the_documented_conditions(runs):
    assert runs["source_file"].n_unique() == 201
    conditions = runs.select("model", "persona", "dataset").unique()
    counts = dict(conditions.group_by("model").len().iter_rows())
    # 97 Qwen conditions of the main run + 16 custom constitutions trained with EM; 44 Llama
    assert counts == {"qwen2.5-7b": 113, "llama3.1-8b": 44}
    assert conditions.filter(pl.col("dataset") == "none").height == 5
    assert runs.height == 73_680


def test_largest_run_reproduces_the_published_persona_table(runs):
    table = with_published(persona_table(as_first_study_saw_it(runs), resamples=100))
    published = table.filter(pl.col("published_n").is_not_null())
    assert published.height == sum(len(p) for p in PUBLISHED_PERSONA_TABLE.values())
    for row in published.iter_rows(named=True):
        label = f"{row['model']} {row['persona']}"
        assert row["n"] == row["published_n"], label
        assert abs(row["mean"] - row["published_mean"]) <= 0.1, label
        assert abs(row["sd"] - row["published_sd"]) <= 0.1, label


def test_largest_run_keeps_about_54000_scored_answers(runs):
    kept = apply_policy(runs, "largest_run")
    assert kept.height == 56_080
    assert kept["aligned"].is_not_null().sum() == 55_827
    assert kept.select("model", "persona", "dataset", "question_id", "sample_idx").is_unique().all()


# ------------------------------------------------ the re-analysis of the real archive


@pytest.fixture(scope="module")
def config() -> dict:
    import yaml

    return yaml.safe_load((REPO / "config" / "first_study.yaml").read_text())


@pytest.fixture(scope="module")
def configured_runs(unpacked, config) -> pl.DataFrame:
    """Every judge run as config/first_study.yaml imports them (persona aliases on)."""
    return read_judge_runs(unpacked, ImportSettings.from_config(config["first_study"]))


def test_no_imported_condition_mixes_em_and_no_em_answers(configured_runs, config):
    from tests.test_first_study_import import assert_em_identity_kept

    assert_em_identity_kept(configured_runs, ImportSettings.from_config(config["first_study"]))


def test_overall_judge_reliability_is_every_pair_of_judge_runs(runs):
    from tests.test_first_study_reliability import assert_overall_row_is_every_pair

    assert_overall_row_is_every_pair(runs)


def test_largest_run_and_all_runs_agree_where_a_condition_was_judged_once(runs):
    from tests.test_first_study_replicates import assert_policies_agree_where_judged_once

    assert_policies_agree_where_judged_once(runs)


def test_findings_counts_equal_counts_over_the_verdict_tables(configured_runs, config):
    from workflow_scripts.first_study.persona_effect import PERSONAS_DIFFER, SHARED_OFFSET
    from workflow_scripts.first_study.reproduction import reproduce
    from workflow_scripts.stats.settings import settings_from_config
    from workflow_scripts.stats.tables import compute_tables

    roles = {d: e["role"] for d, e in config["datasets"].items()}
    settings = settings_from_config(
        {**config["statistics"], "bootstrap_resamples": 400},
        list(config["models"]),
        list(config["personas"]),
        list(roles),
        roles=roles,
    )
    answers = apply_policy(configured_runs, "largest_run")
    tables = compute_tables(answers, settings)
    result = reproduce(configured_runs, answers, tables, settings, first_study_resamples=100)
    effect = result.tables["persona_effect"].filter(pl.col("role") == "em")
    for row in result.tables["persona_effect_summary"].iter_rows(named=True):
        part = effect.filter(pl.col("model") == row["model"])
        assert row["n_datasets"] == part.height
        assert row["n_personas_differ"] == (part["reading"] == PERSONAS_DIFFER).sum()
        assert row["n_shared_offset"] == (part["reading"] == SHARED_OFFSET).sum()
    cells = result.tables["hypothesis_cells"]
    for row in result.tables["hypotheses"].iter_rows(named=True):
        part = cells.filter(
            (pl.col("model") == row["model"])
            & (pl.col("persona") == row["persona"])
            & (pl.col("hypothesis") == row["hypothesis"])
        )
        em = part.filter(pl.col("role") == "em")
        assert row["datasets"] == part.height and row["em_datasets"] == em.height
        assert row["first_study_supports"] == (part["first_study_call"] == "supports").sum()
        assert row["level_supports"] == (em["level_call"] == "supports").sum()
        assert row["protection_estimates"] == em["protection"].fill_nan(None).is_not_null().sum()
    # the levels count only what the statistics' own comparisons table calls significant
    levels = tables["comparisons"].filter(pl.col("in_family"))
    for r in cells.filter(pl.col("level_call") == "supports").iter_rows(named=True):
        level = levels.filter(
            (pl.col("model") == r["model"])
            & (pl.col("persona") == r["persona"])
            & (pl.col("dataset") == r["dataset"])
        ).row(0, named=True)
        assert level["p_adj"] < settings.alpha
