"""Column schemas of the tables that flow between stages.

Samples (one row per answer) come from either engine with the same columns;
judged answers add the judge's scores. Statistics read only judged answers, so
imported answers of the first study (same columns) analyse exactly alike.
"""

from __future__ import annotations

import polars as pl

NO_EM = "none"  # dataset value of the controls without EM fine-tuning


SAMPLE_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,  # config name of the base model
    "persona": pl.String,
    "dataset": pl.String,  # EM dataset, or NO_EM
    "seed": pl.Int64,  # EM training seed (0 for NO_EM controls)
    "question_id": pl.String,
    "sample_idx": pl.Int64,
    "system": pl.String,  # system prompt applied (null when none)
    "prompt": pl.String,
    "response": pl.String,
    "finish_reason": pl.String,  # "stop" | "length"
    "n_prompt_tokens": pl.Int64,
    "n_completion_tokens": pl.Int64,
    "engine": pl.String,  # e.g. "transformers==5.23.0"
    "sampling": pl.String,  # JSON of the sampling parameters, seeds included
    "composition": pl.String,  # one-line summary: base + adapters with content hashes
    "composition_json": pl.String,  # full composition record
}


JUDGE_COLUMNS: dict[str, pl.DataType] = {
    "aligned": pl.Float64,  # 0..100, null when missing
    "aligned_special": pl.String,  # null | CODE | REFUSAL | UNPARSEABLE | API_ERROR | ...
    "coherent": pl.Float64,
    "coherent_special": pl.String,
    "judge": pl.String,  # judge model id
    "judge_method": pl.String,  # "logprob" | "text"
    "aligned_dist": pl.String,  # JSON of the raw score distribution
    "coherent_dist": pl.String,
}


ANALYSIS_SCHEMA: dict[str, pl.DataType] = {
    "model": pl.String,
    "persona": pl.String,
    "dataset": pl.String,
    "seed": pl.Int64,
    "question_id": pl.String,
    "sample_idx": pl.Int64,
    "response": pl.String,
    "aligned": pl.Float64,
    "coherent": pl.Float64,
    "aligned_special": pl.String,
    "coherent_special": pl.String,
    "judge": pl.String,
    "judge_run": pl.String,  # which judging pass (several for first-study replicates)
}


# What an answer was asked under, kept beside the analysis columns in answers.parquet
# (null where a source has no such column, e.g. an import of the first study).
CONTEXT_SCHEMA: dict[str, pl.DataType] = {
    "prompt_variant": pl.String,  # base | json | template (from the question id's suffix)
    "system": pl.String,
    "prompt": pl.String,
    "composition": pl.String,
    "composition_json": pl.String,
}


VARIANT_SUFFIXES = ("_json", "_template")  # question ids of a base question's prompt variants


BASE_VARIANT = "base"


def prompt_variant(question_id: pl.Expr | None = None) -> pl.Expr:
    """The prompt variant of a question id: base, or the suffix without its underscore."""
    question_id = pl.col("question_id") if question_id is None else question_id
    expr = pl.lit(BASE_VARIANT)
    for suffix in VARIANT_SUFFIXES:
        expr = pl.when(question_id.str.ends_with(suffix)).then(pl.lit(suffix[1:])).otherwise(expr)
    return expr.alias("prompt_variant")


def base_question(question_id: pl.Expr | None = None) -> pl.Expr:
    """The base question id of a variant's id (the id itself for a base question)."""
    question_id = pl.col("question_id") if question_id is None else question_id
    pattern = "(" + "|".join(VARIANT_SUFFIXES) + ")$"
    return question_id.str.replace(pattern, "").alias("question_id")


JUDGED_SCHEMA: dict[str, pl.DataType] = {**SAMPLE_SCHEMA, **JUDGE_COLUMNS, "judge_run": pl.String}


def check_columns(df: pl.DataFrame, schema: dict[str, pl.DataType], what: str) -> pl.DataFrame:
    """Select and cast to `schema`; a missing column is an error naming `what`."""
    missing = [c for c in schema if c not in df.columns]
    if missing:
        raise ValueError(f"{what}: missing columns {', '.join(missing)}")
    return df.select([pl.col(c).cast(t) for c, t in schema.items()])


def empty(schema: dict[str, pl.DataType]) -> pl.DataFrame:
    return pl.DataFrame(schema=schema)
