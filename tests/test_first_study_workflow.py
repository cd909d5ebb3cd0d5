"""The import-only workflow: `snakemake` on config/first_study.yaml, pointed at the
fixture, imports the judge runs and writes the reproduction section with no model,
no GPU and no API key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import polars as pl
import pytest
import yaml

from workflow_scripts.core.schema import ANALYSIS_SCHEMA

REPO = Path(__file__).resolve().parents[1]
GOOD = REPO / "tests" / "data" / "first_study_fixture" / "good"
TARGETS = ["results/final/tables/reproduction.md", "results/imported/first_study_answers.parquet"]


def import_only_config(tmp_path: Path, **first_study) -> Path:
    config = yaml.safe_load((REPO / "config" / "first_study.yaml").read_text())
    config["first_study"].update(first_study)
    config["questions"]["source"]["path"] = str(REPO / config["questions"]["source"]["path"])
    config["statistics"]["bootstrap_resamples"] = 200
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def snakemake(tmp_path: Path, config: Path, *targets: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "OPENAI_API_KEY"}
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(config),
            "--cores",
            "1",
            *targets,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


@pytest.mark.e2e
@pytest.mark.parametrize("policy", ["largest_run", "all_runs"])
def test_import_only_workflow_writes_the_reproduction(tmp_path, policy):
    config = import_only_config(tmp_path, archive=None, directory=str(GOOD), policy=policy)
    run = snakemake(tmp_path, config, *TARGETS)
    assert run.returncode == 0, run.stderr[-3000:]
    answers = pl.read_parquet(tmp_path / TARGETS[1])
    assert answers.select(list(ANALYSIS_SCHEMA)).height == (36 if policy == "largest_run" else 48)
    report = (tmp_path / TARGETS[0]).read_text()
    assert report.startswith("## Reproduction of the first study")
    assert f"Policy `{policy}`" in report
    reliability = pl.read_csv(
        tmp_path / "results/final/tables/judge_reliability.tsv", separator="\t"
    )
    assert set(reliability["dataset"]) == {"insecure", "(all)"}
    log = (tmp_path / "logs" / "first_study" / "import.log").read_text()
    assert "8 judge-run files, 6 conditions (2 judged more than once), 48 judged answers" in log


@pytest.mark.e2e
def test_a_missing_archive_is_a_config_error(tmp_path):
    config = import_only_config(tmp_path, archive="no/such/archive.tar.xz", directory=None)
    run = snakemake(tmp_path, config, "-n", *TARGETS)
    assert run.returncode != 0
    assert "first_study.archive: not found: no/such/archive.tar.xz" in run.stdout + run.stderr
