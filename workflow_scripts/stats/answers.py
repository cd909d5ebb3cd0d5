"""All judged answers in one table (rule `answers_table`): the judged Parquet files of
every model x persona x dataset, in the columns of `ANALYSIS_SCHEMA` followed by those
of `CONTEXT_SCHEMA` (prompt variant, system prompt, prompt, composition with the base
and adapter hashes), so that nothing the statistics group by is lost."""

import logging
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import InputError, read_parquet
from workflow_scripts.core.schema import ANALYSIS_SCHEMA, CONTEXT_SCHEMA, prompt_variant

log = logging.getLogger(__name__)


DEFAULT_JUDGE_RUN = "1"  # the one judging pass of a file without a judge_run column


ANSWER_KEY = ["model", "persona", "dataset", "seed", "question_id", "sample_idx", "judge_run"]


def read_judged(path: str | Path) -> pl.DataFrame:
    """One judged file in the analysis columns; judge_run added where absent."""
    path = Path(path)
    frame = read_parquet(path)
    if "judge_run" not in frame.columns:
        frame = frame.with_columns(pl.lit(DEFAULT_JUDGE_RUN).alias("judge_run"))
    missing = [c for c in ANALYSIS_SCHEMA if c not in frame.columns]
    if missing:
        raise InputError(f"{path}: missing columns {', '.join(missing)}; expected the judged-answer schema")
    if "prompt_variant" not in frame.columns:
        frame = frame.with_columns(prompt_variant())
    context = [
        pl.col(c).cast(t) if c in frame.columns else pl.lit(None, t).alias(c) for c, t in CONTEXT_SCHEMA.items()
    ]
    try:
        return frame.select([*(pl.col(c).cast(t) for c, t in ANALYSIS_SCHEMA.items()), *context])
    except pl.exceptions.PolarsError as err:
        raise InputError(f"{path}: a column has the wrong type for the analysis schema ({err})") from None


def concat_answers(paths: Sequence[str | Path]) -> pl.DataFrame:
    """Every answer of `paths`; an answer (model, persona, dataset, seed, question,
    sample, judge run) that appears twice is an error naming both files."""
    frames = []
    for path in paths:
        frame = read_judged(path).with_columns(pl.lit(str(path)).alias("_file"))
        frames.append(frame)
    if not frames:
        return pl.DataFrame(schema={**ANALYSIS_SCHEMA, **CONTEXT_SCHEMA})
    answers = pl.concat(frames, how="vertical")
    duplicated = answers.filter(pl.struct(ANSWER_KEY).is_duplicated())
    if duplicated.height:
        first = duplicated.sort(ANSWER_KEY).head(2)
        key = ", ".join(f"{k}={first[k][0]}" for k in ANSWER_KEY)
        files = sorted(set(first["_file"].to_list()))
        raise InputError(
            f"{' and '.join(files)}: answer ({key}) appears more than once; "
            f"expected one judgement per answer and judge run ({duplicated.height} duplicated rows)"
        )
    return answers.drop("_file").sort(ANSWER_KEY)
