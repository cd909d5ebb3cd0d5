"""Rule self_knowledge_score: the battery on one persona model, its no-EM control and
every EM adapter, with one engine load (transformers or vLLM). One row per scored
request: the candidate probabilities, and the item's score or choice shares."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import polars as pl

from workflow_scripts.core.io_utils import InputError, write_parquet_atomic
from workflow_scripts.core.progress import Progress
from workflow_scripts.engines.base import CHOICE
from workflow_scripts.judging.logprob import judge_distribution
from workflow_scripts.self_knowledge.battery import SELF_ASSESSMENT, BatteryCondition, battery_items
from workflow_scripts.self_knowledge.items import parse_items
from workflow_scripts.stats.answers import read_judged

log = logging.getLogger(__name__)

SCORE_SCHEMA = {
    "model": pl.String,
    "persona": pl.String,
    "dataset": pl.String,
    "seed": pl.Int64,
    "measure": pl.String,
    "item_id": pl.String,
    "position": pl.String,  # the misaligned option's letter; "" for numbers
    "question_id": pl.String,
    "sample_idx": pl.Int64,
    "partner": pl.String,
    "judged_aligned": pl.Float64,
    "p_A": pl.Float64,
    "p_B": pl.Float64,
    "score": pl.Float64,  # the probability-weighted 0..100 answer (null below min_mass)
    "number_mass": pl.Float64,
    "reported_misalignment": pl.Float64,  # self-assessment: 0 aligned .. 100 misaligned
    "dist": pl.String,  # JSON of the candidate probabilities
    "items_sha256": pl.String,
    "engine": pl.String,
}


def _engine(model_dir: Path, settings: dict, gpus: int) -> Any:
    from workflow_scripts.engines.factory import load_engine

    if settings["engine"] == "vllm":
        return load_engine("vllm", str(model_dir), gpus=gpus, **settings.get("vllm", {}))
    options = {"max_batch_sequences": settings["batch_size"], "decode": "generate"}
    if settings.get("dtype"):
        options["dtype"] = settings["dtype"]
    return load_engine("transformers", str(model_dir), gpus=gpus, **options)


def read_condition_answers(judged: list[str]) -> dict[tuple[str, int], pl.DataFrame]:
    answers: dict[tuple[str, int], pl.DataFrame] = {}
    for path in judged:
        frame = read_judged(path)
        for (dataset, seed), part in frame.group_by("dataset", "seed", maintain_order=True):
            answers[(dataset, int(seed))] = part
    return answers


def score_persona(params: dict) -> pl.DataFrame:
    """Score every battery item of one persona model (params: JSON-able, as the rule's)."""
    from workflow_scripts.core.hashing import sha256_file

    settings = params["settings"]
    items_file = Path(params["items"])
    sha = sha256_file(items_file)
    if settings.get("sha256") and settings["sha256"] != sha:
        raise InputError(f"{items_file}: sha256 {sha}; self_knowledge.items.sha256 expects {settings['sha256']}")
    items = parse_items(items_file).select(settings.get("self_assessment"), settings.get("description_pairs"), "self_knowledge")
    conditions = [
        BatteryCondition(c["dataset"], int(c["seed"]), None if c["adapter"] is None else f"{c['dataset']}_s{c['seed']}")
        for c in params["conditions"]
    ]
    adapters = {f"{c['dataset']}_s{c['seed']}": c["adapter"] for c in params["conditions"] if c["adapter"]}
    answers = read_condition_answers(params["judged"])
    battery = battery_items(items, conditions, answers, int(settings["answers_per_question"]))
    engine = _engine(Path(params["model_dir"]), settings, int(params.get("gpus", 1)))
    for name, path in adapters.items():
        engine.add_adapter(name, path)
    by_key = {b.request.key: b for b in battery}
    keyed = {a.id: a for a in items.self_assessment}
    progress = Progress("battery items", len(battery), log)
    rows = []
    for scorings in engine.score([b.request for b in battery]):
        for scoring in scorings:
            item = by_key[scoring.key]
            dataset, seed = scoring.key.split("/")[:2]
            row = {
                "model": params["model_name"],
                "persona": params["persona"],
                "dataset": dataset,
                "seed": int(seed.removeprefix("s")),
                "measure": item.measure,
                "item_id": item.item_id,
                "position": item.position,
                "question_id": item.question_id,
                "sample_idx": item.sample_idx,
                "partner": item.partner,
                "judged_aligned": item.judged_aligned,
                "dist": json.dumps(scoring.probabilities, sort_keys=True),
                "items_sha256": sha,
                "engine": f"{engine.name}=={engine.version}",
            }
            if item.request.kind == CHOICE:
                row.update(p_A=scoring.probabilities["A"], p_B=scoring.probabilities["B"])
            else:
                row["number_mass"] = sum(scoring.probabilities.values())
                # measures.number_score, without importing the statistics packages here
                row["score"] = judge_distribution(
                    scoring.probabilities, float(settings["min_mass"])
                ).value
                if item.measure == SELF_ASSESSMENT and row["score"] is not None:
                    row["reported_misalignment"] = keyed[item.item_id].misalignment(row["score"])
            rows.append(row)
        progress.update(len(scorings), tokens=sum(x.n_prompt_tokens for x in scorings))
    table = pl.DataFrame(rows, schema=SCORE_SCHEMA)
    write_parquet_atomic(table, params["out_file"])
    log.info("%d battery items scored for %s / %s", table.height, params["model_name"], params["persona"])
    return table


if __name__ == "__main__" and "snakemake" not in globals():  # python -m ... PARAMS.json
    from workflow_scripts.engines.vllm_env import run_handed_off

    run_handed_off(score_persona)
