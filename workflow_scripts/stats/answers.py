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


ONE_ANSWER = ANSWER_KEY[:-1]  # an answer, whatever judging pass scored it


def one_judgement_per_answer(answers: pl.DataFrame) -> pl.DataFrame:
    """One row per answer: an answer judged several times (judge replicates, e.g. an
    import of the first study with `all_runs`) is one answer measured repeatedly, not
    several answers. Its scores are the mean over the runs that scored it (null where
    none did, with the first run's reason); `judge_run` lists its runs (';'-joined).
    Answers judged once are returned unchanged, so every estimate of a condition judged
    once is the same whichever judge runs were imported."""
    if "judge_run" not in answers.columns or answers.height == 0 or not answers.select(pl.struct(ONE_ANSWER).is_duplicated().any()).item():
        return answers
    order = answers.columns
    scores = ("aligned", "coherent")
    rest = [c for c in order if c not in (*ONE_ANSWER, *scores, "judge_run")]
    collapsed = answers.sort([*ONE_ANSWER, "judge_run"]).group_by(ONE_ANSWER, maintain_order=True).agg(
        *[pl.col(s).mean() for s in scores],
        *[
            pl.col(f"{s}_special").filter(pl.col(s).is_null()).first().alias(f"_{s}_special")
            for s in scores
            if f"{s}_special" in rest
        ],
        *[pl.col(c).first() for c in rest if not c.endswith("_special")],
        pl.col("judge_run").str.join(";"),
    )
    collapsed = collapsed.with_columns(
        pl.when(pl.col(s).is_null()).then(pl.col(f"_{s}_special")).otherwise(None).alias(f"{s}_special")
        for s in scores
        if f"{s}_special" in rest
    ).drop([c for c in collapsed.columns if c.startswith("_")])
    return collapsed.select(order)
