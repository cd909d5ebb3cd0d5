"""Rule h3_sample: answers of every analysis checkpoint of one persona's EM runs, from
one engine load of the persona model (the checkpoints served as LoRA adapters), with
the study's sampling settings and H3's own n and questions.

This is sampling.sample.sample_persona with one condition per (dataset, seed, step):
the condition's dataset is written `dataset@step` while sampling (so request keys and
request seeds are distinct per checkpoint and stable across reruns), then split again:
the rows carry the EM dataset in `dataset` and the step in the `sampling` record's
`h3.step`, so the study's judge reads them unchanged.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from workflow_scripts.core.io_utils import (
    InputError,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from workflow_scripts.h3.checkpoints import checkpoint_dirs, select_checkpoints
from workflow_scripts.sampling.sample import Condition, sample_persona

log = logging.getLogger(__name__)

STEP_SEP = "@"


def checkpoint_conditions(runs: list[dict], stride: int) -> list[Condition]:
    """One condition per selected analysis checkpoint of each run
    (`runs`: {"dataset", "seed", "analysis_dir"})."""
    conditions = []
    for run in runs:
        found = checkpoint_dirs(Path(run["analysis_dir"]))
        if not found:
            raise InputError(f"{run['analysis_dir']}: no analysis checkpoints (step-N directories)")
        for step, directory in select_checkpoints(found, stride):
            conditions.append(Condition(f"{run['dataset']}{STEP_SEP}{step}", int(run["seed"]), str(directory)))
    return conditions


def questions_subset(questions_file: Path, ids: list[str] | None, out: Path) -> Path:
    """The questions file itself, or a copy holding only `ids` (in the file's order)."""
    if not ids:
        return questions_file
    content = read_json(questions_file)
    known = [q["id"] for q in content["questions"]]
    unknown = sorted(set(ids) - set(known))
    if unknown:
        raise InputError(f"h3.questions: {unknown} not in {questions_file} (ids: {', '.join(known)})")
    write_json_atomic(out, {**content, "questions": [q for q in content["questions"] if q["id"] in ids]})
    return out


def split_steps(table: pl.DataFrame) -> pl.DataFrame:
    """`dataset@step` back to the dataset, the step into the sampling record."""
    parts = [d.rsplit(STEP_SEP, 1) for d in table["dataset"].to_list()]
    sampling = [
        json.dumps(json.loads(s) | {"h3": {"step": int(step)}}, sort_keys=True)
        for s, (_, step) in zip(table["sampling"].to_list(), parts, strict=True)
    ]
    return table.with_columns(
        pl.Series("dataset", [d for d, _ in parts], dtype=pl.String),
        pl.Series("sampling", sampling, dtype=pl.String),
    )


def sample_checkpoints(
    model_dir: Path,
    runs: list[dict],
    questions_file: Path,
    out_file: Path,
    sampling: dict,
    model_name: str,
    persona: str,
    stride: int = 1,
    question_ids: list[str] | None = None,
    engine: Any = None,
    gpus: int = 1,
) -> pl.DataFrame:
    out_file = Path(out_file)
    conditions = checkpoint_conditions(runs, stride)
    questions = questions_subset(Path(questions_file), question_ids, out_file.with_name(out_file.name + ".questions.json"))
    log.info("one engine load of %s for %d checkpoint adapters of %d runs", model_dir, len(conditions), len(runs))
    staged = out_file.with_name(out_file.name + ".by-checkpoint.parquet")
    table = sample_persona(Path(model_dir), conditions, questions, staged, sampling, model_name, persona,
                           engine=engine, gpus=gpus)
    table = split_steps(table)
    write_parquet_atomic(table, out_file)
    staged.unlink(missing_ok=True)
    return table


def sample_from_params(params: dict) -> pl.DataFrame:
    """sample_checkpoints from JSON-able parameters (the rule's, or a handed-off run's)."""
    return sample_checkpoints(
        model_dir=Path(params["model_dir"]),
        runs=params["runs"],
        questions_file=Path(params["questions_file"]),
        out_file=Path(params["out_file"]),
        sampling=params["sampling"],
        model_name=params["model_name"],
        persona=params["persona"],
        stride=int(params.get("stride", 1)),
        question_ids=params.get("question_ids"),
        gpus=int(params.get("gpus", 1)),
    )


if __name__ == "__main__" and "snakemake" not in globals():  # python -m ... PARAMS.json
    from workflow_scripts.engines.vllm_env import run_handed_off

    run_handed_off(sample_from_params)
