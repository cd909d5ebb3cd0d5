"""Rule self_knowledge_summary: the battery's scored items of every persona model and
the judged answers -> the tables (items, conditions, classes per persona, tests
against the reference) and the two figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import atomic_path, read_parquet
from workflow_scripts.core.misalignment import with_misaligned
from workflow_scripts.self_knowledge import figures
from workflow_scripts.self_knowledge.measures import (
    CONDITION,
    Thresholds,
    class_table,
    condition_table,
    item_values,
    persona_tests,
)
from workflow_scripts.stats.answers import one_judgement_per_answer

log = logging.getLogger(__name__)


def _write_csv(table: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path, suffix=".csv") as tmp:
        table.write_csv(tmp)


def summarize(scores: pl.DataFrame, answers: pl.DataFrame, settings: Mapping) -> dict[str, pl.DataFrame]:
    """The four tables from scored items and judged answers (pure)."""
    thresholds = Thresholds(float(settings["behaviour_threshold"]), float(settings["self_report_threshold"]))
    answers = with_misaligned(
        one_judgement_per_answer(answers), float(settings["misaligned_below"]), float(settings["coherent_above"])
    )
    values = item_values(scores)
    conditions = condition_table(
        values, answers, thresholds, int(settings["bootstrap_resamples"]), float(settings["alpha"]), int(settings["seed"])
    )
    classes = class_table(conditions, list(settings["em_datasets"])) if conditions.height else pl.DataFrame()
    tests = persona_tests(
        classes, settings["reference_persona"], float(settings["alpha"]), int(settings["bootstrap_resamples"]), int(settings["seed"])
    ) if classes.height else persona_tests(
        pl.DataFrame(schema={"model": pl.String, "persona": pl.String, "n_coherent": pl.Int64, "n_inverted": pl.Int64}),
        settings["reference_persona"], 0.05, 0, 0,
    )
    return {
        "self_knowledge_items": values,
        "self_knowledge_conditions": conditions,
        "self_knowledge_classes": classes,
        "self_knowledge_tests": tests,
    }


def summary_from_files(
    score_files: list[str], answers_file: str, settings: Mapping, tables: Mapping[str, str], figure_files: Mapping[str, str], dpi: int
) -> dict[str, pl.DataFrame]:
    scores = pl.concat([read_parquet(f) for f in score_files], how="vertical")
    answers = read_parquet(answers_file)
    keys = scores.select(CONDITION).unique()
    answers = answers.join(keys, on=CONDITION, how="semi")
    result = summarize(scores, answers, settings)
    for name, path in tables.items():
        _write_csv(result[name], path)
    thresholds = Thresholds(float(settings["behaviour_threshold"]), float(settings["self_report_threshold"]))
    figures.scatter(result["self_knowledge_conditions"], thresholds, Path(figure_files["self_knowledge_scatter"]), dpi)
    figures.class_shares(result["self_knowledge_classes"], Path(figure_files["self_knowledge_classes"]), dpi)
    log.info(
        "self-knowledge: %d conditions, %d persona tests",
        result["self_knowledge_conditions"].height,
        result["self_knowledge_tests"].height,
    )
    return result
