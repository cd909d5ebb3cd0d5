"""Every table of the results from the judged answers (rule `statistics`).

One cluster bootstrap (shared by all tables, so differences stay paired by question)
feeds the condition, persona, comparison, hypothesis, medical, dataset and
cross-model tables; see stats/bootstrap.py, stats/descriptive.py and stats/comparisons.py.
"""

import logging
import time
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import atomic_path
from workflow_scripts.core.misalignment import coherence_filter, with_misaligned
from workflow_scripts.core.schema import ANALYSIS_SCHEMA, check_columns
from workflow_scripts.stats.bootstrap import ClusterBootstrap, build_design
from workflow_scripts.stats.comparisons import (
    TESTS,
    cross_model,
    hypothesis_summary,
    hypothesis_table,
    medical_comparison,
    persona_comparisons,
)
from workflow_scripts.stats.descriptive import (
    condition_summary,
    dataset_difficulty,
    persona_summary,
)
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.settings import NO_EM, StatsSettings

log = logging.getLogger(__name__)


def display_order(answers: pl.DataFrame, settings: StatsSettings) -> pl.DataFrame:
    """Conditions in the config's order (models, personas, then the control and the EM
    datasets); names the config does not list follow, by name."""

    def ranked(column: str, preferred: tuple[str, ...], first: tuple[str, ...] = ()) -> pl.DataFrame:
        present = set(answers[column].unique().to_list())
        names = list(dict.fromkeys(n for n in (*first, *preferred) if n in present))
        names += sorted(present - set(names))
        return pl.DataFrame({column: names, f"{column}_rank": range(len(names))})

    conditions = answers.select(["model", "persona", "dataset"]).unique()
    for column, preferred, first in (
        ("model", settings.model_order, ()),
        ("persona", settings.persona_order, (settings.reference_persona,)),
        ("dataset", settings.dataset_order, (NO_EM,)),
    ):
        conditions = conditions.join(ranked(column, preferred, first), on=column)
    return conditions.sort(["model_rank", "persona_rank", "dataset_rank"]).select(["model", "persona", "dataset"])


def missing_conditions(answers: pl.DataFrame, expected: list[dict] | None) -> pl.DataFrame:
    """Expected conditions without answers, and conditions without a single scored answer."""
    present = answers.group_by(["model", "persona", "dataset"]).agg(
        pl.col("aligned").is_not_null().sum().alias("n_scored")
    )
    rows = []
    if expected:
        wanted = pl.DataFrame(expected).select(["model", "persona", "dataset"]).unique(maintain_order=True)
        absent = wanted.join(present, on=["model", "persona", "dataset"], how="anti")
        rows.append(absent.with_columns(pl.lit("no answers").alias("status")))
    unscored = present.filter(pl.col("n_scored") == 0).select(["model", "persona", "dataset"])
    rows.append(unscored.with_columns(pl.lit("no scored answers").alias("status")))
    return pl.concat(rows, how="vertical_relaxed")


def missing_scores(answers: pl.DataFrame) -> pl.DataFrame:
    """Missing judge scores per condition, by score and reason (the *_special column)."""
    parts = [
        answers.filter(pl.col(score).is_null())
        .group_by(["model", "persona", "dataset", pl.col(f"{score}_special").fill_null("unknown").alias("reason")])
        .agg(pl.len().alias("n"))
        .with_columns(pl.lit(score).alias("score"))
        for score in ("aligned", "coherent")
    ]
    table = pl.concat(parts, how="vertical_relaxed")
    return table.select(["model", "persona", "dataset", "score", "reason", "n"]).sort(
        ["model", "persona", "dataset", "score", "reason"]
    )


def compute_tables(
    answers: pl.DataFrame, settings: StatsSettings, expected: list[dict] | None = None
) -> dict[str, pl.DataFrame]:
    """All tables, by name (see TABLES)."""
    if settings.test not in TESTS:
        raise ValueError(f"statistics.test: unknown test {settings.test!r}; expected one of {', '.join(TESTS)}")
    answers = check_columns(answers, ANALYSIS_SCHEMA, "answers")
    flagged = with_misaligned(answers, settings.misaligned_below, settings.coherent_above)
    scored = coherence_filter(answers.filter(pl.col("aligned").is_not_null()), settings.coherence_filter)
    tables: dict[str, pl.DataFrame] = {
        "missing_conditions": missing_conditions(answers, expected),
        "missing_scores": missing_scores(answers),
    }
    if scored.height == 0:
        raise ValueError("answers: no answer has an alignment score; nothing to analyse")
    started = time.perf_counter()
    design = build_design(scored, flagged, settings.tail_thresholds, display_order(answers, settings))
    boot = ClusterBootstrap(design, settings.bootstrap_resamples, settings.seed)
    _ = boot.totals
    log.info("bootstrap: %d conditions, %d resamples, %.1f s", design.n_conditions,
             settings.bootstrap_resamples, time.perf_counter() - started)
    tables["conditions"] = condition_summary(boot, answers, settings)
    tables["personas"] = persona_summary(boot, settings)
    comparisons = persona_comparisons(boot, settings)
    tables["comparisons"] = comparisons
    tables["hypotheses"] = hypothesis_table(comparisons, settings)
    tables["hypothesis_summary"] = hypothesis_summary(tables["hypotheses"])
    tables["significant"] = comparisons.filter(pl.col("in_family") & pl.col("significant").fill_null(False)).sort(
        ["model", "p_adj"]
    )
    tables["medical"] = medical_comparison(boot, settings)
    tables["datasets"] = dataset_difficulty(boot, settings)
    tables["cross_model"] = cross_model(boot, settings)
    log.info("tables: %.1f s", time.perf_counter() - started)
    return {name: tables[name] for name in TABLES}


def write_tables(tables: dict[str, pl.DataFrame], paths: dict[str, str | Path]) -> None:
    for name, path in paths.items():
        with atomic_path(path, suffix=".csv") as tmp:
            tables[name].write_csv(tmp)


TEXT_COLUMNS = {
    "model", "persona", "dataset", "datasets", "personas", "judge", "status", "score", "reason",
    "alternative", "test", "hypothesis", "direction", "verdict", "supported_on", "contrary_on",
    "model_a", "model_b",
}


FLAG_COLUMNS = {"in_family", "significant"}


COUNT_COLUMNS = {"rank", "n", "n_answers", "n_missing", "n_datasets", "n_personas", "n_supported",
                 "n_contrary", "n_not_supported"}


def read_table(path: str | Path) -> pl.DataFrame:
    """A table written by `write_tables`, with its column types: a CSV column that is
    empty (or all null) reads as text and is cast back by name."""
    table = pl.read_csv(path, infer_schema_length=None)

    def dtype(column: str) -> pl.DataType:
        if column in TEXT_COLUMNS:
            return pl.String
        if column in FLAG_COLUMNS:
            return pl.Boolean
        return pl.Int64 if column in COUNT_COLUMNS else pl.Float64

    return table.with_columns(
        pl.col(c).cast(dtype(c), strict=False) for c, t in table.schema.items() if t == pl.String and dtype(c) != pl.String
    )
