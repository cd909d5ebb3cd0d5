"""Parse-time checks of the configuration beyond its JSON schema.

Cheap by design (no torch, no network): every SLURM job re-parses the Snakefile.
Each error names the config file and the key path, like
`config/config.yaml: personas.humor.source: unknown source 'hf-hub'; expected one of: ...`.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.schema import NO_EM
from workflow_scripts.judging.kinds import UnknownJudgeKind, judge_kind
from workflow_scripts.persona.constitution import parse_constitution


class ConfigError(InputError):
    pass


def _where(config_files: Iterable[str]) -> str:
    files = [str(f) for f in config_files]
    return ", ".join(files) if files else "config"


def schema_error_message(config: dict, schema: dict, config_files: Iterable[str]) -> str | None:
    """The most relevant schema violation as one line naming the key, or None."""
    from jsonschema import Draft202012Validator
    from jsonschema.exceptions import best_match

    error = best_match(Draft202012Validator(schema).iter_errors(config))
    if error is None:
        return None
    path = ".".join(str(p) for p in error.absolute_path) or "(top level)"
    if error.validator == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        extra = sorted(set(error.instance) - set(allowed)) if isinstance(error.instance, dict) else []
        hint = f"; allowed: {', '.join(allowed)}" if allowed else ""
        return f"{_where(config_files)}: {path}: unknown key(s) {', '.join(map(repr, extra))}{hint}"
    if error.validator == "enum":
        return (
            f"{_where(config_files)}: {path}: unknown value {error.instance!r}; "
            f"expected one of: {', '.join(map(str, error.validator_value))}"
        )
    return f"{_where(config_files)}: {path}: {error.message}"


def check_config(config: dict, config_files: Iterable[str], basedir: str | os.PathLike = ".") -> None:
    """Cross-references the schema cannot express; raise ConfigError on the first problem."""
    where = _where(config_files)
    basedir = Path(basedir)

    def fail(key: str, message: str) -> None:
        raise ConfigError(f"{where}: {key}: {message}")

    models = config["models"]
    personas = config["personas"]
    datasets = config.get("datasets", {})
    grid_models = [m for m, entry in models.items() if entry.get("grid", True)]
    importing = any((config.get("first_study") or {}).get(k) for k in ("archive", "directory"))
    if not grid_models and not importing:
        fail("models", "no model has grid: true")

    for name, persona in personas.items():
        source = persona["source"]
        if source == "released":
            for model in grid_models:
                if model not in persona["released"]:
                    fail(f"personas.{name}.released", f"no adapter given for model '{model}'")
            for model in persona["released"]:
                if model not in models:
                    fail(f"personas.{name}.released.{model}", "not a model in `models`")
        elif source == "constitution":
            path = _resolve(basedir, persona["constitution"])
            try:
                parse_constitution(path)
            except InputError as err:
                fail(f"personas.{name}.constitution", str(err))

    seeds = config.get("seeds") or []
    for seed in seeds:
        if (times := seeds.count(seed)) > 1:
            fail("seeds", f"seed {seed} is listed {times} times; each seed is one EM run")
    if not importing and not datasets and not config.get("controls", True):
        fail(
            "datasets",
            "the grid is empty: no EM dataset and `controls: false`; "
            "add a dataset or set controls: true",
        )

    for name, dataset in datasets.items():
        _check_source(fail, f"datasets.{name}.source", dataset["source"], config, basedir)
        if dataset.get("kind") == "kl":
            reference = (dataset.get("kl") or {}).get("reference")
            if not reference:
                fail(f"datasets.{name}.kl.reference", "kind 'kl' needs a reference dataset")
            if reference not in datasets:
                fail(f"datasets.{name}.kl.reference", f"'{reference}' is not a dataset in `datasets`")
    _check_questions(fail, config["questions"], config, basedir)
    for name, archive in config.get("archives", {}).items():
        if archive["source"]["type"] == "archive":
            fail(f"archives.{name}.source.type", "an archive cannot come from another archive")
        _check_source(fail, f"archives.{name}.source", archive["source"], config, basedir)

    training = config.get("persona_training", {})
    for key in ("teacher_model", "generator_model"):
        model = training.get(key)
        if model is not None and model not in models:
            fail(f"persona_training.{key}", f"'{model}' is not a model in `models`")

    judge = config["judge"]
    try:
        kind = judge_kind(judge["kind"])
    except UnknownJudgeKind as err:
        fail("judge.kind", str(err).split(": ", 1)[1])
    else:
        if kind.config_model == "required" and judge["model"] not in models:
            fail(
                "judge.model",
                f"a {kind.name} judge must name a model in `models`; '{judge['model']}' is not one",
            )

    stats = config.get("statistics", {})
    reference = stats.get("reference_persona", "baseline")
    if reference not in personas:
        fail("statistics.reference_persona", f"'{reference}' is not a persona in `personas`")
    _check_statistics_names(fail, stats, list(personas), datasets)


def fit_statistics_defaults_to_grid(config: dict) -> None:
    """Before the schema's defaults are applied: the default hypotheses and medical pair
    name the full study's personas and datasets. A config that does not set them gets
    them for the part of the grid it has (a smaller grid is not an error); set in a
    config, every name is checked by `check_config`."""
    stats = config.get("statistics", {})
    personas = config.get("personas") or {}
    datasets = config.get("datasets") or {}
    if not all(isinstance(x, dict) for x in (stats, personas, datasets)):
        return  # the schema check names what is wrong
    config["statistics"] = stats
    defaults = schema_defaults("statistics")
    if "hypotheses" not in stats:
        fitted = {}
        for name, entry in defaults["hypotheses"].items():
            present = [p for p in entry.get("personas") or [] if p in personas]
            if present:
                fitted[name] = {**entry, "personas": present}
        stats["hypotheses"] = fitted
    if "medical_pair" not in stats:
        pair = defaults["medical_pair"]
        stats["medical_pair"] = pair if all(d in datasets for d in pair) else None


def _check_statistics_names(fail: Any, stats: dict, personas: list[str], datasets: dict) -> None:
    """Every persona or dataset named under `statistics` is one of the grid's (a typo
    would otherwise leave an empty table and a verdict-less report)."""
    persona_list = ", ".join(personas)
    dataset_list = ", ".join(datasets) or "(none)"

    def persona(key: str, name: str) -> None:
        if name not in personas:
            fail(key, f"'{name}' is not a persona in the grid; personas: {persona_list}")

    def dataset(key: str, name: str) -> None:
        if name not in datasets:
            fail(key, f"'{name}' is not a dataset in the grid; datasets: {dataset_list}")

    family = stats.get("fdr_family") or {}
    for name in family.get("personas") or []:
        persona("statistics.fdr_family.personas", name)
    for name in family.get("datasets") or []:
        dataset("statistics.fdr_family.datasets", name)
        if datasets[name].get("role") == "benign":
            fail(
                "statistics.fdr_family.datasets",
                f"'{name}' has role 'benign'; the FDR family holds datasets of role em",
            )
    for hypothesis, entry in (stats.get("hypotheses") or {}).items():
        for name in entry.get("personas") or []:
            persona(f"statistics.hypotheses.{hypothesis}.personas", name)
    for name in stats.get("key_personas") or []:
        persona("statistics.key_personas", name)
    for name in stats.get("medical_pair") or []:
        dataset("statistics.medical_pair", name)


def _resolve(basedir: Path, path: str) -> Path:
    p = Path(path)
    return p if p.is_absolute() else basedir / p


def _check_source(fail: Any, key: str, source: dict, config: dict, basedir: Path) -> None:
    kind = source["type"]
    if kind == "local":
        if not _resolve(basedir, source["path"]).exists():
            fail(f"{key}.path", f"file not found: {source['path']}")
    elif kind == "archive" and source["archive"] not in config.get("archives", {}):
        fail(f"{key}.archive", f"'{source['archive']}' is not an entry of `archives`")
    if source.get("sha256") or source.get("allow_unpinned"):
        return
    if kind == "local":
        fail(
            f"{key}.sha256",
            f"a local file needs a pinned sha256 (`sha256sum {source['path']}`), "
            "or allow_unpinned: true",
        )
    fail(f"{key}.sha256", "a remote or archived file needs a pinned sha256")


def _check_questions(fail: Any, questions: dict, config: dict, basedir: Path) -> None:
    """The question ids asked for, and a local questions file itself (small: parsed
    here, so a duplicate id or an unknown one stops the run before any job)."""
    from workflow_scripts.sampling.questions import parse_questions

    ids = questions.get("ids")
    if ids is not None:
        if not ids:
            fail("questions.ids", "empty; list the ids to evaluate, or null for every base id")
        repeated = sorted({qid for qid in ids if ids.count(qid) > 1})
        if repeated:
            fail("questions.ids", f"listed more than once: {', '.join(repeated)}")
    source = questions["source"]
    _check_source(fail, "questions.source", source, config, basedir)
    if source["type"] == "local":
        try:
            parse_questions(_resolve(basedir, source["path"]), ids)
        except InputError as err:
            fail("questions.source", str(err))


TARGET_DIRS = ("final", "eval", "imported", "judge_cache")
PERSONA_STAGES = ("persona", "em", "samples", "judged")


def unknown_target_name(
    target: str, models: Iterable[str], personas: Iterable[str], datasets: Iterable[str]
) -> str | None:
    """Why a `results/...` target names a model, persona or dataset that the config
    lacks, or None. (Its wildcards are constrained to the config's names, so Snakemake
    alone would only say that no rule produces it.)"""
    parts = Path(os.path.normpath(target)).parts
    if len(parts) < 3 or parts[0] != "results":
        return None
    known = {"model": list(models), "persona": list(personas), "dataset": list(datasets)}

    def unknown(kind: str, name: str) -> str | None:
        if name in known[kind]:
            return None
        return f"{kind} '{name}' is not in the config; {kind}s: {', '.join(known[kind])}"

    if parts[1] == "datasets":
        return unknown("dataset", parts[2].split(".")[0])
    if parts[1] in TARGET_DIRS:
        return None
    problem = unknown("model", parts[1])
    if problem or len(parts) < 4 or parts[2] not in PERSONA_STAGES:
        return problem
    persona = parts[3].removesuffix(".parquet") if parts[2] == "samples" else parts[3]
    problem = unknown("persona", persona)
    if problem or len(parts) < 5 or parts[2] not in ("em", "judged"):
        return problem
    dataset = parts[4].split(".")[0] if parts[2] == "judged" else parts[4]
    if parts[2] == "em":
        known["dataset"] = [d for d in known["dataset"] if d != NO_EM]
    return unknown("dataset", dataset)


def check_targets(
    args: Iterable[str],
    config: dict,
    config_files: Iterable[str],
) -> None:
    """Every `results/...` path among the command-line arguments names only the
    config's models, personas and datasets."""
    datasets = [*(config.get("datasets") or {}), NO_EM]
    for arg in args:
        if arg.startswith("-"):
            continue
        problem = unknown_target_name(arg, config["models"], config["personas"], datasets)
        if problem:
            raise ConfigError(f"{_where(config_files)}: target {arg}: {problem}")


SCALE_REPLACED = ("models", "personas")


def apply_scale_study(config: dict) -> None:
    """`include_scale: true`: the config's `scale` block becomes the study. Its models
    and personas replace the study's (larger models have no released persona adapters,
    so a scale study has its own personas); any other key of the block updates the
    study's section of that name one level deep (e.g. statistics.hypotheses)."""
    flag = config.get("include_scale", False)
    if isinstance(flag, str):  # `--config include_scale=true` arrives as text
        if flag.lower() not in ("true", "false"):
            raise ConfigError(f"include_scale: expected true or false, found {flag!r}")
        config["include_scale"] = flag = flag.lower() == "true"
    if not flag:
        return
    block = config.get("scale") or {}
    if not isinstance(block, dict) or not all(block.get(key) for key in SCALE_REPLACED):
        raise ConfigError("scale: include_scale is true, so `scale` must give models and personas")
    for key, value in block.items():
        if key in SCALE_REPLACED or not isinstance(value, dict):
            config[key] = value
        else:
            config[key] = {**(config.get(key) or {}), **value}
