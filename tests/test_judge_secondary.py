"""A secondary judge for real: the local judge (a tiny random model) scores a stratified
subsample of a primary judged table through `judge_secondary`, and its agreement with
the primary is computed from both tables."""

from __future__ import annotations

import json

import polars as pl
import pytest

from tests.judge_support import sample_rows, save_tiny_judge, write_samples, write_short_questions
from workflow_scripts.core.schema import JUDGED_SCHEMA
from workflow_scripts.judging.agreement import agreement_table, paired
from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.secondary import judge_secondary
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.subsample import Subsample


@pytest.fixture(scope="module")
def primary(tmp_path_factory):
    root = tmp_path_factory.mktemp("secondary")
    judge_dir = save_tiny_judge(root / "judge")
    write_short_questions(root / "questions.json", n=2)
    questions = json.loads((root / "questions.json").read_text())
    write_samples(root / "samples.parquet", sample_rows(questions, 6))  # 12 answers
    settings = JudgeSettings.from_config(
        {"kind": "local", "model": "tiny", "api_key_env": None, "min_mass": 0.0, "cache_dir": str(root / "cache")}
    )
    judge_samples(root / "samples.parquet", root / "questions.json", "none", settings, root / "judged.parquet",
                  root / "judged.json", writer="primary", judge_model_dir=judge_dir)  # fmt: skip
    return root, judge_dir, settings


def test_the_secondary_judge_scores_its_subsample_into_its_own_cache(primary, tmp_path):
    root, judge_dir, settings = primary
    secondary = JudgeSettings.from_config({**settings.public(), "cache_dir": str(tmp_path / "cache")})
    spec = Subsample(share=0.25, low_score_below=101, low_score_weight=1, seed=0)  # every answer "low"
    summary = judge_secondary(
        root / "judged.parquet", root / "questions.json", "none", secondary, spec,
        tmp_path / "judged.parquet", tmp_path / "judged.json", writer="secondary", judge_model_dir=judge_dir,
    )  # fmt: skip
    table = pl.read_parquet(tmp_path / "judged.parquet")
    assert table.schema == pl.Schema(JUDGED_SCHEMA)
    assert table.height == 3 and summary["answers"] == 3  # ceil(0.25 x 12)
    assert summary["strata"] == [{"model": "smollm2-135m", "persona": "baseline", "dataset": "none", "seed": 0,
                                  "stratum": "low", "answers": 12, "chosen": 3}]  # fmt: skip
    assert summary["cache_hits"] == 0 and summary["judged_now"] == summary["distinct_judgements"]
    assert summary["primary"].endswith("judged.parquet") and summary["subsample"]["share"] == 0.25
    pairs = paired(pl.read_parquet(root / "judged.parquet"), table)
    overall = agreement_table(pairs, "again", min_answers=100).to_dicts()
    aligned = next(r for r in overall if r["metric"] == "aligned")
    assert aligned["n"] == 3 and aligned["mean_diff"] == pytest.approx(0.0, abs=1e-4)  # the same judge
