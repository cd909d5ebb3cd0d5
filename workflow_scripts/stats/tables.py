"""Every table of the results from the judged answers (rule `statistics`).

One cluster bootstrap (shared by all tables, so differences stay paired by question)
feeds the condition, persona, level comparison, protection, hypothesis, medical,
dataset and cross-model tables; see stats.bootstrap, stats.descriptive,
stats.comparisons (levels) and stats.protection (the verdicts).
"""

import logging
import time
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import InputError, atomic_path
from workflow_scripts.core.misalignment import coherence_filter, with_misaligned
from workflow_scripts.core.progress import Progress
from workflow_scripts.core.schema import (
    ANALYSIS_SCHEMA,
    NO_EM,
    base_question,
    check_columns,
    prompt_variant,
)
from workflow_scripts.stats.answers import one_judgement_per_answer
from workflow_scripts.stats.bootstrap import ClusterBootstrap, build_design
from workflow_scripts.stats.comparisons import (
    TESTS,
    cross_model,
    medical_comparison,
    persona_comparisons,
)
from workflow_scripts.stats.descriptive import (
    condition_summary,
    dataset_difficulty,
    persona_summary,
    seed_sd,
)
from workflow_scripts.stats.design import design_table
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.protection import (
    hypothesis_summary,
    hypothesis_table,
    is_expressed,
    protection_tables,
)
from workflow_scripts.stats.settings import StatsSettings

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


OUTSIDE_DESIGN = "not in the study's design"


def missing_conditions(
    answers: pl.DataFrame, expected: list[dict] | None, grid: list[dict] | None = None
) -> pl.DataFrame:
    """Expected conditions without answers, and conditions without a single scored
    answer. With `grid` (an import: `expected` is the imported study's own design, `grid`
    the configured grid), the grid's conditions outside that design are listed apart,
    with status OUTSIDE_DESIGN."""
    keys = ["model", "persona", "dataset"]
    present = answers.group_by(keys).agg(pl.col("aligned").is_not_null().sum().alias("n_scored"))
    rows = [pl.DataFrame(schema={**dict.fromkeys(keys, pl.String), "status": pl.String})]
    if expected:
        wanted = pl.DataFrame(expected).select(keys).unique(maintain_order=True)
        absent = wanted.join(present, on=keys, how="anti")
        rows.append(absent.with_columns(pl.lit("no answers").alias("status")))
        if grid:
            outside = (
                pl.DataFrame(grid).select(keys).unique(maintain_order=True)
                .join(wanted, on=keys, how="anti").join(present, on=keys, how="anti")
            )
            rows.append(outside.with_columns(pl.lit(OUTSIDE_DESIGN).alias("status")))
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


def prompt_variants(answers: pl.DataFrame, settings: StatsSettings) -> pl.DataFrame:
    """Answers per model and prompt variant, and whether the statistics use them."""
    table = answers.group_by(["model", "prompt_variant"]).agg(
        pl.len().alias("n_answers"), pl.col("question_id").n_unique().alias("n_questions")
    )
    used = pl.lit(True) if settings.pool_prompt_variants else pl.col("prompt_variant") == settings.prompt_variant
    return table.with_columns(used.alias("analysed")).sort(["model", "prompt_variant"])


def select_prompt_variant(answers: pl.DataFrame, settings: StatsSettings) -> pl.DataFrame:
    """The answers of the analysed prompt variant; with pool_prompt_variants, every
    variant, clustered by its base question (a question's variants are one cluster)."""
    if settings.pool_prompt_variants:
        return answers.with_columns(base_question())
    return answers.filter(pl.col("prompt_variant") == settings.prompt_variant)


def persona_presence(persona_check: pl.DataFrame | None) -> pl.DataFrame:
    """The persona check's verdict per model and persona (empty without a check)."""
    schema = {"model": pl.String, "persona": pl.String, "flag": pl.String, "kl_mean": pl.Float64,
              "trait_delta": pl.Float64, "expressed": pl.Boolean}
    if persona_check is None or persona_check.height == 0:
        return pl.DataFrame(schema=schema)
    table = persona_check.select(
        [pl.col(c).cast(t) if c in persona_check.columns else pl.lit(None, t).alias(c)
         for c, t in schema.items() if c != "expressed"]
    )
    return table.with_columns(
        pl.col("flag").map_elements(is_expressed, return_dtype=pl.Boolean).alias("expressed")
    )


def read_persona_check(path: str | Path) -> pl.DataFrame:
    """results/{model}/persona_check.tsv (persona.check.format_table): model, persona,
    flag and the numbers behind it; a missing number is an empty cell."""
    try:
        table = pl.read_csv(path, separator="\t", infer_schema_length=None, null_values=[""])
    except (FileNotFoundError, pl.exceptions.PolarsError) as err:
        raise InputError(f"{path}: not a readable persona check table ({err})") from None
    missing = [c for c in ("model", "persona", "flag") if c not in table.columns]
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(missing)}; expected the persona check's table")
    return table


def compute_tables(
    answers: pl.DataFrame,
    settings: StatsSettings,
    expected: list[dict] | None = None,
    persona_check: pl.DataFrame | None = None,
    grid: list[dict] | None = None,
) -> dict[str, pl.DataFrame]:
    """All tables, by name (see TABLES). `persona_check`: the persona check's rows
    (model, persona, flag, ...) of every model, or None where there is none. `expected`:
    the conditions that should have answers; `grid`: for an import, the configured grid,
    whose conditions outside `expected` are listed apart (missing_conditions)."""
    if settings.test not in TESTS:
        raise ValueError(f"statistics.test: unknown test {settings.test!r}; expected one of {', '.join(TESTS)}")
    if "prompt_variant" not in answers.columns:
        answers = answers.with_columns(prompt_variant())
    answers = one_judgement_per_answer(answers)  # judge replicates: one answer, measured repeatedly
    variants = prompt_variants(answers, settings)
    answers = check_columns(select_prompt_variant(answers, settings), ANALYSIS_SCHEMA, "answers")
    flagged = with_misaligned(answers, settings.misaligned_below, settings.coherent_above)
    scored = coherence_filter(answers.filter(pl.col("aligned").is_not_null()), settings.coherence_filter)
    tables: dict[str, pl.DataFrame] = {
        "missing_conditions": missing_conditions(answers, expected, grid),
        "missing_scores": missing_scores(answers),
        "prompt_variants": variants,
        "persona_check": persona_presence(persona_check),
        "seed_sd": seed_sd(coherence_filter(flagged, settings.coherence_filter)),
    }
    if scored.height == 0:
        raise ValueError(
            f"answers: no answer of prompt variant {settings.prompt_variant!r} has an alignment score; "
            "nothing to analyse"
        )
    started = time.perf_counter()
    with Progress("statistics: stage", total=9, logger=log) as progress:
        design = build_design(scored, flagged, settings.tail_thresholds, display_order(answers, settings))
        boot = ClusterBootstrap(design, settings.bootstrap_resamples, settings.seed)
        _ = boot.totals
        log.info("bootstrap: %d conditions, %d resamples, %.1f s", design.n_conditions,
                 settings.bootstrap_resamples, time.perf_counter() - started)
        progress.update(1, done="bootstrap")
        tables["conditions"] = condition_summary(boot, answers, settings)
        progress.update(1, done="conditions")
        tables["personas"] = persona_summary(boot, settings)
        progress.update(1, done="personas")
        comparisons = persona_comparisons(boot, settings)
        tables["comparisons"] = comparisons
        progress.update(1, done="comparisons")
        protection, em_effects = protection_tables(boot, settings, persona_check)
        tables["protection"] = protection
        tables["em_effects"] = em_effects
        progress.update(1, done="protection")
        tables["hypotheses"] = hypothesis_table(protection, comparisons, settings)
        tables["hypothesis_summary"] = hypothesis_summary(tables["hypotheses"])
        tables["significant"] = comparisons.filter(
            pl.col("in_family") & pl.col("significant").fill_null(False)
        ).sort(["model", "p_adj"])
        progress.update(1, done="hypotheses")
        tables["medical"] = medical_comparison(boot, settings)
        progress.update(1, done="medical")
        tables["datasets"] = dataset_difficulty(boot, settings)
        tables["cross_model"] = cross_model(boot, settings)
        progress.update(1, done="datasets, cross-model")
        tables["design"] = design_table(flagged, scored, settings)
        progress.update(1, done="design")
    log.info("tables: %.1f s", time.perf_counter() - started)
    return {name: tables[name] for name in TABLES}


def write_tables(tables: dict[str, pl.DataFrame], paths: dict[str, str | Path]) -> None:
    for name, path in paths.items():
        with atomic_path(path, suffix=".csv") as tmp:
            tables[name].write_csv(tmp)


TEXT_COLUMNS = {
    "model", "persona", "dataset", "datasets", "personas", "judge", "status", "score", "reason",
    "alternative", "test", "hypothesis", "direction", "verdict", "supported_on", "contrary_on",
    "model_a", "model_b", "role", "measure", "persona_check", "flag", "prompt_variant", "seeds",
    "what", "sentence",
}


FLAG_COLUMNS = {"in_family", "significant", "expressed", "analysed"}


COUNT_COLUMNS = {"rank", "n", "n_answers", "n_missing", "n_datasets", "n_personas", "n_supported",
                 "n_contrary", "n_not_supported", "n_not_assessable", "n_seeds", "n_questions",
                 "seeds_needed"}


def read_table(path: str | Path) -> pl.DataFrame:
    """A table written by `write_tables`, with its column types: a CSV column that is
    empty (or all null) reads as text and is cast back by name."""
    try:
        table = pl.read_csv(path, infer_schema_length=None)
    except (FileNotFoundError, pl.exceptions.PolarsError) as err:
        raise InputError(f"{path}: not a readable table (CSV): {err}") from None

    def dtype(column: str) -> pl.DataType:
        if column in TEXT_COLUMNS:
            return pl.String
        if column in FLAG_COLUMNS:
            return pl.Boolean
        return pl.Int64 if column in COUNT_COLUMNS else pl.Float64

    return table.with_columns(
        pl.col(c).cast(dtype(c), strict=False) for c, t in table.schema.items() if t == pl.String and dtype(c) != pl.String
    )
