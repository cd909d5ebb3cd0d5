"""Import the judged answers of the first, script-based study
(docs/methods.md, Re-analysis of the first study).

One JSON file per judge run (`eval_<persona>[_<dataset>]_gpt41mini_<timestamp>.json`):
top level `persona, dataset, model_id, model_path, response_file, judge_model,
judge_model_short, timestamp, questions, summary`; `questions` is a list of
`{id, question, responses}`, each response `{sample_idx, response, alignment,
coherence}` with `{score: 0..100 | null, raw_response, special}`.

Each file becomes rows of the analysis schema (workflow_scripts.core.schema.ANALYSIS_SCHEMA)
plus provenance columns. The model comes from the file's directory (the files do not
name it), the persona and dataset from the file's fields, never from its name (persona
names contain underscores, so the name is ambiguous).

Conditions judged more than once (same answers, several judge runs) are kept whole
(`all_runs`, each run a judge replicate told apart by `judge_run`) or reduced to the
run with the most scored answers (`largest_run`, what the first study did; ties go to
the earliest run). Every run carries the flag `largest_run` either way.
"""

import fnmatch
import functools
import json
import logging
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import polars as pl
from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.schema import ANALYSIS_SCHEMA, NO_EM

log = logging.getLogger(__name__)


POLICIES = ("largest_run", "all_runs")


SPECIALS = ("CODE", "REFUSAL", "PARSE_ERROR", "API_ERROR")


PROVENANCE_SCHEMA: dict[str, pl.DataType] = {
    "source_file": pl.String,  # path inside the archive or directory
    "source_timestamp": pl.String,  # the file's own `timestamp` field (ISO 8601)
    "source_persona": pl.String,  # persona and dataset as the file writes them
    "source_dataset": pl.String,
    "aligned_raw": pl.String,  # the judge's raw text
    "coherent_raw": pl.String,
    "run_scored": pl.Int64,  # answers of this run with an alignment score
    "runs_of_condition": pl.Int64,  # judge runs of this model x persona x dataset
    "largest_run": pl.Boolean,  # the run the largest_run policy keeps
}


IMPORT_SCHEMA: dict[str, pl.DataType] = {**ANALYSIS_SCHEMA, **PROVENANCE_SCHEMA}


JUDGE_RUN_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["persona", "judge_model", "timestamp", "questions"],
    "properties": {
        "persona": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "dataset": {"type": ["string", "null"], "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]*$"},
        "judge_model": {"type": "string", "minLength": 1},
        "timestamp": {"type": "string", "minLength": 1},
        "questions": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["id", "responses"],
                "properties": {
                    "id": {"type": "string", "minLength": 1},
                    "responses": {"type": "array", "items": {"type": "object"}},
                },
            },
        },
    },
}


ANSWER_FIELDS = ("sample_idx", "response", "alignment", "coherence")


JUDGEMENT_FIELDS = ("score", "special")


_DEFAULTS = schema_defaults("first_study")  # config/schema.yaml: the only defaults


@dataclass(frozen=True)
class ImportSettings:
    """How judge-run files map onto the analysis schema (config block `first_study`)."""

    policy: str = _DEFAULTS["policy"]
    file_pattern: str = _DEFAULTS["file_pattern"]
    default_model: str = _DEFAULTS["default_model"]
    model_by_directory: Mapping[str, str] = field(
        default_factory=lambda: dict(_DEFAULTS["model_by_directory"])
    )
    default_dataset: str = _DEFAULTS["default_dataset"]
    no_em_persona_prefix: str | None = _DEFAULTS["no_em_persona_prefix"]
    persona_aliases: Mapping[str, str] = field(
        default_factory=lambda: dict(_DEFAULTS["persona_aliases"])
    )
    personas: tuple[str, ...] | None = None  # allowed personas (config `personas`); None: any
    datasets: tuple[str, ...] | None = None  # allowed EM datasets (config `datasets`); None: any

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy {self.policy!r}: expected one of {', '.join(POLICIES)}")

    @classmethod
    def from_config(
        cls, block: Mapping[str, Any], personas=None, datasets=None
    ) -> "ImportSettings":
        keys = {f for f in cls.__dataclass_fields__ if f not in ("personas", "datasets")}
        given = {k: v for k, v in block.items() if k in keys and v is not None}
        if "no_em_persona_prefix" in block:  # null is meaningful here: no persona-only runs
            given["no_em_persona_prefix"] = block["no_em_persona_prefix"]
        return cls(
            **given,
            personas=tuple(personas) if personas is not None else None,
            datasets=tuple(datasets) if datasets is not None else None,
        )


def iter_judge_files(
    source: str | Path, pattern: str = "eval_*.json"
) -> Iterator[tuple[str, bytes]]:
    """(name, content) of every judge-run file in a directory (recursively) or a tar
    archive, sorted by name; `name` is the path relative to the directory / inside the
    archive."""
    source = Path(source)
    if source.is_dir():
        for path in sorted(source.rglob("*"), key=lambda p: p.relative_to(source).as_posix()):
            if path.is_file() and fnmatch.fnmatch(path.name, pattern):
                yield path.relative_to(source).as_posix(), path.read_bytes()
    elif source.is_file():
        # Read in archive order (a compressed tar does not seek cheaply), then sort.
        files = []
        try:
            with tarfile.open(source, mode="r|*") as archive:
                for member in archive:
                    if member.isfile() and fnmatch.fnmatch(
                        PurePosixPath(member.name).name, pattern
                    ):
                        handle = archive.extractfile(member)
                        assert handle is not None  # a regular file always has content
                        files.append((member.name, handle.read()))
        except (tarfile.TarError, EOFError, OSError) as err:
            raise InputError(f"{source}: not a readable tar archive ({err})") from None
        yield from sorted(files)
    else:
        raise InputError(f"{source}: no such archive or directory")


def _decode(name: str, raw: bytes) -> dict:
    try:
        data = json.loads(raw)
    except UnicodeDecodeError as err:
        raise InputError(f"{name}: byte {err.start}: not UTF-8 text") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{name}: line {err.lineno}, column {err.colno}: {err.msg} (JSON)"
        ) from None
    _validate(name, data)
    return data


@functools.cache
def _validator() -> Draft202012Validator:
    return Draft202012Validator(JUDGE_RUN_SCHEMA)


def _validate(name: str, data: Any) -> None:
    error = best_match(_validator().iter_errors(data))
    if error is None:
        return
    place = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    message = error.message if len(error.message) <= 200 else error.message[:197] + "..."
    raise InputError(f"{name}: {place}: {message}")


def _found(value: Any) -> str:
    text = json.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _check_answer(name: str, place: str, answer: Any) -> None:
    """One answer: {sample_idx: int >= 0, response: str, alignment / coherence:
    {score: int 0..100 | null, special: null | CODE | REFUSAL | PARSE_ERROR | API_ERROR}}."""
    missing = [f for f in ANSWER_FIELDS if f not in answer]
    if missing:
        raise InputError(f"{name}: {place}: missing field(s) {', '.join(missing)}")
    idx = answer["sample_idx"]
    if type(idx) is not int or idx < 0:
        raise InputError(
            f"{name}: {place}.sample_idx: expected an integer >= 0, found {_found(idx)}"
        )
    if not isinstance(answer["response"], str):
        raise InputError(
            f"{name}: {place}.response: expected a string, found {_found(answer['response'])}"
        )
    for key in ("alignment", "coherence"):
        judged = answer[key]
        if not isinstance(judged, dict) or any(f not in judged for f in JUDGEMENT_FIELDS):
            raise InputError(
                f"{name}: {place}.{key}: expected an object with score and special, found {_found(judged)}"
            )
        score = judged["score"]
        if score is not None and (type(score) is not int or not 0 <= score <= 100):
            raise InputError(
                f"{name}: {place}.{key}.score: expected an integer 0-100 or null, found {_found(score)}"
            )
        if judged["special"] is not None and judged["special"] not in SPECIALS:
            raise InputError(
                f"{name}: {place}.{key}.special: expected null or one of {', '.join(SPECIALS)}, "
                f"found {_found(judged['special'])}"
            )
        raw = judged.get("raw_response")
        if raw is not None and not isinstance(raw, str):
            raise InputError(
                f"{name}: {place}.{key}.raw_response: expected a string, found {_found(raw)}"
            )


def model_of(name: str, settings: ImportSettings) -> str:
    """The model of a file: the first directory of its path listed in
    `model_by_directory`, else the default model."""
    for part in PurePosixPath(name).parts[:-1]:
        if part in settings.model_by_directory:
            return settings.model_by_directory[part]
    return settings.default_model


def condition_of(data: Mapping[str, Any], settings: ImportSettings) -> tuple[str, str]:
    """(persona, dataset) of a run in this study's names."""
    persona = data["persona"]
    dataset = data.get("dataset") or settings.default_dataset
    prefix = settings.no_em_persona_prefix
    if prefix and persona.startswith(prefix):
        dataset = NO_EM
    return settings.persona_aliases.get(persona, persona), dataset


def judge_run_rows(name: str, raw: bytes, settings: ImportSettings) -> pl.DataFrame:
    """Rows (IMPORT_SCHEMA, without the run-ranking columns filled) of one judge-run
    file; an InputError names the file and the place for anything malformed."""
    data = _decode(name, raw)
    persona, dataset = condition_of(data, settings)
    if settings.personas is not None and persona not in settings.personas:
        raise InputError(
            f"{name}: persona: '{persona}' is not a persona in config `personas` "
            f"(add it there, or map it with first_study.persona_aliases)"
        )
    if settings.datasets is not None and dataset != NO_EM and dataset not in settings.datasets:
        raise InputError(f"{name}: dataset: '{dataset}' is not a dataset in config `datasets`")

    columns: dict[str, list] = {c: [] for c in ("question_id", "sample_idx", "response")}
    for key in (
        "aligned",
        "aligned_special",
        "aligned_raw",
        "coherent",
        "coherent_special",
        "coherent_raw",
    ):
        columns[key] = []
    seen: set[tuple[str, int]] = set()
    for qi, question in enumerate(data["questions"]):
        for ri, answer in enumerate(question["responses"]):
            place = f"questions.{qi}.responses.{ri}"
            _check_answer(name, place, answer)
            key = (question["id"], answer["sample_idx"])
            if key in seen:
                raise InputError(
                    f"{name}: {place}.sample_idx: duplicate answer "
                    f"{answer['sample_idx']} of question '{question['id']}'"
                )
            seen.add(key)
            columns["question_id"].append(question["id"])
            columns["sample_idx"].append(answer["sample_idx"])
            columns["response"].append(answer["response"])
            for prefix, judged in (
                ("aligned", answer["alignment"]),
                ("coherent", answer["coherence"]),
            ):
                columns[prefix].append(judged["score"])
                columns[f"{prefix}_special"].append(judged["special"])
                columns[f"{prefix}_raw"].append(judged.get("raw_response"))

    rows = pl.DataFrame(
        columns,
        schema={c: IMPORT_SCHEMA[c] for c in columns},
    )
    scored = rows["aligned"].is_not_null().sum()
    return rows.with_columns(
        pl.lit(model_of(name, settings)).alias("model"),
        pl.lit(persona).alias("persona"),
        pl.lit(dataset).alias("dataset"),
        pl.lit(0, dtype=pl.Int64).alias("seed"),
        pl.lit(data["judge_model"]).alias("judge"),
        pl.lit(f"{PurePosixPath(name).name}@{data['timestamp']}").alias("judge_run"),
        pl.lit(name).alias("source_file"),
        pl.lit(data["timestamp"]).alias("source_timestamp"),
        pl.lit(data["persona"]).alias("source_persona"),
        pl.lit(data.get("dataset"), dtype=pl.String).alias("source_dataset"),
        pl.lit(scored, dtype=pl.Int64).alias("run_scored"),
        pl.lit(None, dtype=pl.Int64).alias("runs_of_condition"),
        pl.lit(None, dtype=pl.Boolean).alias("largest_run"),
    ).select([pl.col(c).cast(t) for c, t in IMPORT_SCHEMA.items()])


CONDITION = ["model", "persona", "dataset", "seed"]


def rank_runs(runs: pl.DataFrame) -> pl.DataFrame:
    """Fill `runs_of_condition` and `largest_run`: per condition, the run with the most
    scored answers wins; ties go to the earliest (`source_timestamp`, then file name)."""
    per_run = (
        runs.group_by([*CONDITION, "judge_run"])
        .agg(
            pl.col("run_scored").first(),
            pl.col("source_timestamp").first(),
            pl.col("source_file").first(),
        )
        .sort(
            [*CONDITION, "run_scored", "source_timestamp", "source_file"],
            descending=[False] * len(CONDITION) + [True, False, False],
        )
        .with_columns(
            pl.len().over(CONDITION).cast(pl.Int64).alias("runs_of_condition"),
            (pl.int_range(pl.len()).over(CONDITION) == 0).alias("largest_run"),
        )
        .select([*CONDITION, "judge_run", "runs_of_condition", "largest_run"])
    )
    return (
        runs.drop("runs_of_condition", "largest_run")
        .join(per_run, on=[*CONDITION, "judge_run"], how="left")
        .select(list(IMPORT_SCHEMA))
    )


def apply_policy(runs: pl.DataFrame, policy: str) -> pl.DataFrame:
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r}: expected one of {', '.join(POLICIES)}")
    return runs.filter(pl.col("largest_run")) if policy == "largest_run" else runs


def read_judge_runs(source: str | Path, settings: ImportSettings) -> pl.DataFrame:
    """Every answer of every judge run under `source`, ranked (IMPORT_SCHEMA)."""
    frames = []
    for name, raw in iter_judge_files(source, settings.file_pattern):
        frames.append(judge_run_rows(name, raw, settings))
    if not frames:
        raise InputError(f"{source}: no file matching '{settings.file_pattern}'")
    runs = pl.concat(frames, how="vertical")
    duplicated = (
        runs.group_by("judge_run")
        .agg(pl.col("source_file").unique())
        .filter(pl.col("source_file").list.len() > 1)
    )
    if duplicated.height:
        files = duplicated["source_file"][0].to_list()
        raise InputError(f"{files[0]}: judge run also in {files[1]} (same file name and timestamp)")
    _check_one_source_persona(runs)
    return rank_runs(runs).sort(
        [*CONDITION, "source_timestamp", "judge_run", "question_id", "sample_idx"]
    )


def _check_one_source_persona(runs: pl.DataFrame) -> None:
    """Every condition comes from files of one persona name: an alias renames a
    persona, it never merges two (a persona-only run into an EM condition, say)."""
    mixed = (
        runs.group_by(CONDITION)
        .agg(pl.col("source_persona").unique().sort(), pl.col("source_file").first())
        .filter(pl.col("source_persona").list.len() > 1)
        .sort(CONDITION)
    )
    if mixed.height:
        row = mixed.row(0, named=True)
        names = "' and '".join(row["source_persona"])
        raise InputError(
            f"{row['source_file']}: persona: '{names}' both map to {row['model']} x "
            f"{row['persona']} x {row['dataset']}; first_study.persona_aliases may rename a "
            "persona, never merge two (persona-only runs stay apart through "
            "first_study.no_em_persona_prefix)"
        )


EXPERIMENT_FOLDER = "evaluations"


def experiment_name(path: str) -> str:
    """The experiment a judge-run file belongs to: its path up to the first folder named
    `evaluations` (`first-study/evaluations`, `first-study/llama/evaluations`,
    `first-study/constitutional_em/evaluations`), else its folder."""
    parts = PurePosixPath(path).parts[:-1]
    if EXPERIMENT_FOLDER in parts:
        parts = parts[: parts.index(EXPERIMENT_FOLDER) + 1]
    return "/".join(parts) or "."


def experiment_of(column: str = "source_file") -> pl.Expr:
    return pl.col(column).map_elements(experiment_name, return_dtype=pl.String)


def study_design(runs: pl.DataFrame) -> pl.DataFrame:
    """The conditions of the first study's own design: per model and experiment, every
    persona it trained with EM x every EM dataset it used there, and every persona it
    ran without EM x `none`. `answered`: whether the condition has answers."""
    frame = runs.select("model", "persona", "dataset", experiment_of().alias("experiment")).unique()
    em = frame.filter(pl.col("dataset") != NO_EM)
    planned = pl.concat(
        [
            em.select("model", "experiment", "persona")
            .unique()
            .join(em.select("model", "experiment", "dataset").unique(), on=["model", "experiment"]),
            frame.filter(pl.col("dataset") == NO_EM).select(
                "model", "experiment", "persona", "dataset"
            ),
        ],
        how="vertical",
    ).unique()
    present = (
        frame.select("model", "persona", "dataset")
        .unique()
        .with_columns(pl.lit(True).alias("answered"))
    )
    return (
        planned.join(present, on=["model", "persona", "dataset"], how="left")
        .with_columns(pl.col("answered").fill_null(False))
        .select("model", "persona", "dataset", "experiment", "answered")
        .sort("model", "experiment", "persona", "dataset")
    )


def import_first_study(
    source: str | Path, settings: ImportSettings
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(answers under the policy, every run) of the judge-run files under `source`."""
    runs = read_judge_runs(source, settings)
    return apply_policy(runs, settings.policy), runs


def summary_lines(answers: pl.DataFrame, runs: pl.DataFrame, policy: str) -> list[str]:
    conditions = runs.select(CONDITION).unique().height
    repeated = runs.filter(pl.col("runs_of_condition") > 1).select(CONDITION).unique().height
    return [
        f"{runs['source_file'].n_unique()} judge-run files, {conditions} conditions "
        f"({repeated} judged more than once), {runs.height} judged answers in all runs",
        f"policy {policy}: {answers.height} answers kept, "
        f"{answers['aligned'].is_not_null().sum()} with an alignment score",
    ]
