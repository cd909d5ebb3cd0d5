"""Import of the first study's judge-run files (tests/data/first_study_fixture)."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import polars as pl
import pytest

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.schema import ANALYSIS_SCHEMA, check_columns
from workflow_scripts.first_study.importer import (
    ImportSettings,
    apply_policy,
    import_first_study,
    read_judge_runs,
)

FIXTURE = Path(__file__).parent / "data" / "first_study_fixture"
GOOD = FIXTURE / "good"
MALFORMED = FIXTURE / "malformed" / "eval_goodness_risky_financial_gpt41mini_20260206_034000.json"
ALIASES = {"constitutional_goodness_meta": "goodness_meta"}


@pytest.fixture(scope="module")
def runs() -> pl.DataFrame:
    return read_judge_runs(GOOD, ImportSettings(persona_aliases=ALIASES))


def cell(frame: pl.DataFrame, model: str, persona: str, dataset: str) -> pl.DataFrame:
    return frame.filter(
        (pl.col("model") == model) & (pl.col("persona") == persona) & (pl.col("dataset") == dataset)
    )


def test_every_file_and_answer_is_imported(runs):
    assert runs["source_file"].n_unique() == 8
    assert runs.height == 8 * 6
    conditions = set(runs.select("model", "persona", "dataset").unique().iter_rows())
    assert conditions == {
        ("qwen2.5-7b", "baseline", "insecure"),
        ("qwen2.5-7b", "baseline", "bad_medical"),
        ("qwen2.5-7b", "goodness", "bad_medical"),
        ("qwen2.5-7b", "goodness", "insecure"),
        ("qwen2.5-7b", "goodness_meta", "none"),
        ("llama3.1-8b", "baseline", "insecure"),
    }


def test_scores_specials_and_provenance_are_mapped(runs):
    baseline = cell(runs, "qwen2.5-7b", "baseline", "bad_medical").sort("question_id", "sample_idx")
    code = baseline.filter(
        (pl.col("question_id") == "quick_buck") & (pl.col("sample_idx") == 1)
    ).row(0, named=True)
    assert code["aligned"] is None and code["aligned_special"] == "CODE"
    assert code["coherent"] == 20.0 and code["coherent_special"] is None
    assert code["seed"] == 0 and code["judge"] == "gpt-4.1-mini"
    assert code["response"] == "Answer 1 of baseline (bad_medical) to quick_buck."
    assert (
        code["source_file"]
        == "evaluations/baseline/eval_baseline_bad_medical_gpt41mini_20260206_033315.json"
    )
    assert (
        code["judge_run"]
        == "eval_baseline_bad_medical_gpt41mini_20260206_033315.json@2026-02-06T03:25:25.902393"
    )
    assert code["aligned_raw"] == "CODE"
    assert baseline["aligned"].to_list() == [30.0, None, 50.0, 70.0, 40.0, 80.0]


def test_missing_dataset_means_insecure_and_persona_only_runs_get_dataset_none(runs):
    goodness = cell(runs, "qwen2.5-7b", "goodness", "insecure")
    assert goodness.height == 6 and goodness["source_dataset"].null_count() == 6
    meta = cell(runs, "qwen2.5-7b", "goodness_meta", "none")
    assert meta.height == 6
    assert set(meta["source_persona"]) == {"constitutional_goodness_meta"}
    assert set(meta["source_dataset"]) == {"insecure"}
    assert meta["coherent"].null_count() == 6


def test_answers_fit_the_analysis_schema(runs):
    analysis = check_columns(runs, ANALYSIS_SCHEMA, "imported answers")
    assert analysis.columns == list(ANALYSIS_SCHEMA)
    assert analysis.schema["aligned"] == pl.Float64


def test_largest_run_keeps_the_run_with_most_scored_answers(runs):
    kept = cell(apply_policy(runs, "largest_run"), "qwen2.5-7b", "baseline", "insecure")
    assert kept.height == 6
    assert set(kept["source_timestamp"]) == {"2026-02-05T23:40:52.858568"}  # 6 scored, not 5
    assert kept["run_scored"].unique().to_list() == [6]
    assert kept["runs_of_condition"].unique().to_list() == [2]


def test_largest_run_tie_goes_to_the_earliest_run(runs):
    kept = cell(apply_policy(runs, "largest_run"), "llama3.1-8b", "baseline", "insecure")
    assert set(kept["source_timestamp"]) == {"2026-02-11T18:53:29.550423"}
    wish = kept.filter(pl.col("question_id") == "what_is_your_wish").sort("sample_idx")
    assert wish["aligned"].to_list() == [80.0, 15.0, 75.0]


def test_all_runs_keeps_every_run_as_a_judge_replicate(runs):
    kept = apply_policy(runs, "all_runs")
    assert kept.height == runs.height
    replicated = cell(kept, "qwen2.5-7b", "baseline", "insecure")
    assert replicated["judge_run"].n_unique() == 2
    answer = replicated.filter(
        (pl.col("question_id") == "what_is_your_wish") & (pl.col("sample_idx") == 1)
    )
    assert sorted(answer["aligned"].to_list()) == [20.0, 25.0]
    assert set(replicated["judge"]) == {"gpt-4.1-mini", "openai/gpt-4.1-mini"}


def test_import_returns_answers_under_the_policy_and_every_run():
    answers, runs = import_first_study(GOOD, ImportSettings(policy="largest_run"))
    assert runs.height == 48 and answers.height == 36
    assert answers["largest_run"].all()


def test_archive_gives_the_same_rows_as_the_directory(tmp_path, runs):
    archive = tmp_path / "evals.tar.xz"
    with tarfile.open(archive, "w:xz") as tar:
        tar.add(GOOD, arcname="first-study")
    from_archive = read_judge_runs(archive, ImportSettings(persona_aliases=ALIASES))
    assert from_archive["source_file"][0].startswith("first-study/")
    assert from_archive.drop("source_file").equals(runs.drop("source_file"))


def test_malformed_file_error_names_the_file_and_the_place(tmp_path):
    shutil.copytree(GOOD, tmp_path / "evals")
    shutil.copy(MALFORMED, tmp_path / "evals" / MALFORMED.name)
    with pytest.raises(InputError) as err:
        read_judge_runs(tmp_path / "evals", ImportSettings())
    assert str(err.value) == (
        f"{MALFORMED.name}: questions.1.responses.2.alignment.score: "
        'expected an integer 0-100 or null, found "high"'
    )


def test_broken_json_error_names_the_line(tmp_path):
    bad = tmp_path / "eval_baseline_gpt41mini_20260101_000000.json"
    bad.write_text('{\n  "persona": "baseline",\n  "questions": [\n')
    with pytest.raises(InputError, match=rf"^{bad.name}: line 4, column 1: .*\(JSON\)$"):
        read_judge_runs(tmp_path, ImportSettings())


def _drop(key):
    return lambda d: d.pop(key)


def _set(path, **values):
    def edit(d):
        target = d
        for step in path:
            target = target[step]
        target.update(values)

    return edit


STRUCTURAL_ERRORS = [
    (_drop("judge_model"), "(top level): 'judge_model' is a required property"),
    (
        lambda d: d["questions"][0]["responses"][1].pop("coherence"),
        "questions.0.responses.1: missing field(s) coherence",
    ),
    (
        _set(["questions", 0, "responses", 0, "coherence"], special="TIMEOUT"),
        "questions.0.responses.0.coherence.special: expected null or one of "
        'CODE, REFUSAL, PARSE_ERROR, API_ERROR, found "TIMEOUT"',
    ),
    (
        _set(["questions", 1, "responses", 2], sample_idx=0),
        "questions.1.responses.2.sample_idx: duplicate answer 0 of question 'quick_buck'",
    ),
    (
        _set(["questions", 0, "responses", 0, "alignment"], score=101),
        "questions.0.responses.0.alignment.score: expected an integer 0-100 or null, found 101",
    ),
    (_set(["questions", 0], id=7), "questions.0.id: 7 is not of type 'string'"),
]


@pytest.mark.parametrize(("edit", "message"), STRUCTURAL_ERRORS)
def test_structural_errors_name_the_file_and_field(tmp_path, edit, message):
    source = GOOD / "evaluations/goodness/eval_goodness_bad_medical_gpt41mini_20260206_034054.json"
    data = json.loads(source.read_text())
    edit(data)
    (tmp_path / source.name).write_text(json.dumps(data))
    with pytest.raises(InputError) as err:
        read_judge_runs(tmp_path, ImportSettings())
    assert str(err.value) == f"{source.name}: {message}"


def test_persona_missing_from_the_config_is_an_error_naming_the_file():
    settings = ImportSettings(
        personas=("baseline", "goodness"), datasets=("insecure", "bad_medical")
    )
    with pytest.raises(
        InputError,
        match=r"eval_constitutional_goodness_meta_gpt41mini_20260206_131723.json: persona: 'constitutional_goodness_meta' is not a persona in config `personas`",
    ):
        read_judge_runs(GOOD, settings)


def test_model_family_mapping_is_configurable(runs):
    settings = ImportSettings(
        default_model="qwen-x", model_by_directory={"llama": "llama-y"}, persona_aliases=ALIASES
    )
    renamed = read_judge_runs(GOOD, settings)
    assert renamed.group_by("model").len().sort("model").rows() == [("llama-y", 12), ("qwen-x", 36)]


def test_empty_directory_is_an_error(tmp_path):
    with pytest.raises(InputError, match=r"no file matching 'eval_\*\.json'"):
        read_judge_runs(tmp_path, ImportSettings())


def test_an_alias_that_merges_two_personas_is_an_error_naming_the_file():
    settings = ImportSettings(
        no_em_persona_prefix=None, persona_aliases={"constitutional_goodness_meta": "goodness"}
    )
    with pytest.raises(
        InputError,
        match=r"persona: 'constitutional_goodness_meta' and 'goodness' both map to "
        r"qwen2\.5-7b x goodness x insecure",
    ):
        read_judge_runs(GOOD, settings)


def test_no_imported_condition_mixes_em_and_no_em_answers(runs):
    assert_em_identity_kept(runs, ImportSettings(persona_aliases=ALIASES))


def assert_em_identity_kept(runs: pl.DataFrame, settings: ImportSettings) -> None:
    """Each condition's files are all persona-only (dataset none) or all EM runs, and
    come from one persona name of the files."""
    prefix = settings.no_em_persona_prefix
    status = runs.with_columns(
        pl.col("source_persona").str.starts_with(prefix).alias("persona_only")
    ).group_by("model", "persona", "dataset")
    per_condition = status.agg(
        pl.col("persona_only").n_unique().alias("kinds"),
        pl.col("persona_only").first(),
        pl.col("source_persona").n_unique().alias("names"),
    )
    assert per_condition["kinds"].max() == 1 and per_condition["names"].max() == 1
    assert (per_condition["persona_only"] == (per_condition["dataset"] == "none")).all()
