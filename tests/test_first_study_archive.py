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
def runs(tmp_path_factory) -> pl.DataFrame:
    """Every judge run, imported from the archive unpacked into a temporary directory."""
    unpacked = tmp_path_factory.mktemp("first-study")
    with tarfile.open(ARCHIVE) as tar:
        tar.extractall(unpacked, filter="data")
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
