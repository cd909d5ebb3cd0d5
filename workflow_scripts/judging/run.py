"""One judge job: the samples of one (model, persona, dataset) and the questions in;
the judged table (JUDGED_SCHEMA) and a summary (requests, tokens, cost, specials) out.

Every judgement goes through the cache: found ones are not asked again, new ones
are appended the moment they arrive. The table is built from the cached records
alone, so a run that was killed and resumed writes the same table as one that
was not.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Iterator, Mapping
from pathlib import Path

import polars as pl

from workflow_scripts.core.hashing import settings_hash, weights_hash
from workflow_scripts.core.io_utils import (
    InputError,
    read_parquet,
    write_json_atomic,
    write_parquet_atomic,
)
from workflow_scripts.core.job import log_to
from workflow_scripts.core.misalignment import with_misaligned
from workflow_scripts.core.progress import Progress
from workflow_scripts.core.schema import JUDGED_SCHEMA, SAMPLE_SCHEMA, check_columns
from workflow_scripts.judging.accounting import Ledger
from workflow_scripts.judging.cache import JudgementCache, slug
from workflow_scripts.judging.kinds import judge_kind
from workflow_scripts.judging.logprob import API_ERROR, Score, judge_distribution, score_from_text
from workflow_scripts.judging.openai_judge import JudgingIncomplete
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.tasks import METRICS, build_tasks, load_questions
from workflow_scripts.judging.trust import ModelPin, check_error_budget, error_counts

log = logging.getLogger(__name__)

def judge_identity(settings: JudgeSettings, judge_model_dir: str | os.PathLike | None) -> str:
    """Who judges: the endpoint's model id, or a config model pinned by its weights."""
    if judge_model_dir is not None:
        from workflow_scripts.models.loading import model_info

        sha = model_info(judge_model_dir).get("weights_sha256") or weights_hash(judge_model_dir)
        return f"{settings.model}@{sha[:12]}"
    if settings.kind == "vllm_server" and settings.server.get("hf_id"):
        return str(settings.server["hf_id"])
    return settings.model


@contextlib.contextmanager
def open_judge(
    settings: JudgeSettings,
    judge_id: str,
    judge_model_dir: str | os.PathLike | None,
    environ: Mapping[str, str],
    server_log: str | os.PathLike,
) -> Iterator[tuple[object, Ledger | None]]:
    """The judge backend of `settings.kind` (judging/kinds.py), opened and closed here."""
    opener = judge_kind(settings.kind).open()
    with opener(settings, judge_id, judge_model_dir, environ, server_log) as opened:
        yield opened


def judge_samples(
    samples_path: str | os.PathLike,
    questions_path: str | os.PathLike,
    dataset: str,
    settings: JudgeSettings,
    out_path: str | os.PathLike,
    summary_path: str | os.PathLike,
    *,
    writer: str,
    judge_model_dir: str | os.PathLike | None = None,
    server_log: str | os.PathLike = "logs/judge_server.log",
    environ: Mapping[str, str] | None = None,
    handle_signals: bool = False,
) -> dict:
    """Judge every answer of `dataset` in the samples file; returns the summary."""
    return judge_frame(
        read_samples(samples_path, dataset), str(samples_path), questions_path, dataset, settings, out_path,
        summary_path, writer=writer, judge_model_dir=judge_model_dir, server_log=server_log, environ=environ,
        handle_signals=handle_signals,
    )  # fmt: skip


def judge_frame(
    samples: pl.DataFrame,
    samples_path: str,
    questions_path: str | os.PathLike,
    dataset: str,
    settings: JudgeSettings,
    out_path: str | os.PathLike,
    summary_path: str | os.PathLike,
    *,
    writer: str,
    judge_model_dir: str | os.PathLike | None = None,
    server_log: str | os.PathLike = "logs/judge_server.log",
    environ: Mapping[str, str] | None = None,
    handle_signals: bool = False,
    extra_summary: Mapping | None = None,
) -> dict:
    """Judge the answers of `samples` (SAMPLE_SCHEMA rows, read from `samples_path`)."""
    started = time.monotonic()
    environ = os.environ if environ is None else environ
    questions = load_questions(questions_path)
    judge_id = judge_identity(settings, judge_model_dir)
    tasks, row_keys = build_tasks(samples.iter_rows(named=True), questions, judge_id, settings.method, where=str(samples_path))
    cache_dir = Path(settings.cache_dir) / slug(judge_id)
    records: dict[str, dict] = {}
    report: dict = {}
    ledger: Ledger | None = None
    with JudgementCache(cache_dir, writer) as cache:
        records.update(cache.load(t.key for t in tasks))
        pin = ModelPin(judge_id, str(samples_path), [*cache.served_models(), *(r.get("served_model") for r in records.values())])
        pending = [t for t in tasks if t.key not in records]
        log.info(
            "%s: %d answers, %d distinct judgements, %d cached, %d to judge with %s (%s)",
            samples_path, samples.height, len(tasks), len(records), len(pending), judge_id, settings.method,
        )

        progress = Progress("judged", len(pending), log)

        def keep(record: dict) -> None:
            pin.check(record.get("served_model"))  # a changed snapshot stops the job before it is cached
            if "error" not in record:
                cache.append(record)
            records[record["key"]] = record
            progress.update(1)

        if pending:
            with (
                progress,
                open_judge(settings, judge_id, judge_model_dir, environ, server_log) as (judge, ledger),
            ):
                outcome = judge.judge(pending, keep, handle_signals=handle_signals)
                report = outcome if isinstance(outcome, dict) else outcome.as_dict()
        cache_hits = len(tasks) - len(pending)
    missing = [t for t in tasks if t.key not in records]
    summary = {
        "judge": judge_id,
        "kind": settings.kind,
        "method": settings.method,
        "dataset": dataset,
        "samples": str(samples_path),
        "answers": samples.height,
        "judgements": samples.height * len(METRICS),
        "distinct_judgements": len(tasks),
        "cache_hits": cache_hits,
        "judged_now": len(pending) - len(missing),
        "missing": len(missing),
        "cache_file": str(cache.path),
        "run": report,
        "accounting": ledger.summary() if ledger else None,
        "settings": settings.public(),
        **(extra_summary or {}),
    }
    if missing:
        summary["seconds"] = round(time.monotonic() - started, 3)
        log.error("summary: %s", json.dumps(summary, default=str))
        reason = report.get("stop_reason") or "errors"
        raise JudgingIncomplete(
            f"{samples_path}: {len(missing)} of {len(tasks)} judgements missing (stopped: {reason}); "
            f"{summary['judged_now']} new ones are cached in {cache.path}, so a rerun sends only the rest"
        )
    errors = error_counts(records[t.key] for t in tasks)
    summary["errors"] = errors
    summary["served_model"] = pin.served
    summary["error_rate"] = check_error_budget(errors, len(tasks), settings.max_error_rate, str(samples_path))
    table = judged_table(samples, row_keys, records, judge_id, settings)
    summary.update(table_summary(table))
    summary["seconds"] = round(time.monotonic() - started, 3)
    summary["judgements_per_s"] = round(summary["judged_now"] / max(summary["seconds"], 1e-9), 3)
    write_parquet_atomic(table, out_path)
    write_json_atomic(summary_path, summary)
    log.info("summary: %s", json.dumps(summary, default=str))
    return summary


def read_samples(path: str | os.PathLike, dataset: str) -> pl.DataFrame:
    frame = read_parquet(path)
    try:
        frame = check_columns(frame, SAMPLE_SCHEMA, str(path))
    except ValueError as err:
        raise InputError(str(err)) from None
    rows = frame.filter(pl.col("dataset") == dataset)
    if rows.height == 0:
        found = ", ".join(sorted(frame["dataset"].unique().to_list())) or "none"
        raise InputError(f"{path}: no rows with dataset '{dataset}'; datasets found: {found}")
    return rows


def judge_run_id(judge_id: str, settings: JudgeSettings) -> str:
    """Names the judging pass: the same judge, method and threshold give the same id."""
    return settings_hash({"judge": judge_id, "method": settings.method, "min_mass": settings.min_mass})


def score_record(record: dict, min_mass: float) -> tuple[Score, str]:
    """Score and the raw distribution as JSON (most probable first)."""
    if "error" in record:
        return Score(None, record.get("special") or API_ERROR, 0.0), json.dumps({"error": record["error"]})
    dist = record["dist"]
    score = score_from_text(record.get("reply", "")) if record["method"] == "text" else judge_distribution(dist, min_mass)
    ordered = dict(sorted(dist.items(), key=lambda kv: (-kv[1], kv[0])))
    return score, json.dumps(ordered, ensure_ascii=False)


def judged_table(
    samples: pl.DataFrame,
    row_keys: list[dict[str, str]],
    records: Mapping[str, dict],
    judge_id: str,
    settings: JudgeSettings,
) -> pl.DataFrame:
    columns: dict[str, list] = {}
    for metric in METRICS:
        scored = [score_record(records[keys[metric]], settings.min_mass) for keys in row_keys]
        columns[metric] = [s.value for s, _ in scored]
        columns[f"{metric}_special"] = [s.special for s, _ in scored]
        columns[f"{metric}_dist"] = [d for _, d in scored]
    n = samples.height
    table = samples.with_columns(
        *(pl.Series(name, values, dtype=JUDGED_SCHEMA[name]) for name, values in columns.items()),
        pl.Series("judge", [judge_id] * n, dtype=pl.String),
        pl.Series("judge_method", [settings.method] * n, dtype=pl.String),
        pl.Series("judge_run", [judge_run_id(judge_id, settings)] * n, dtype=pl.String),
    )
    return check_columns(table, JUDGED_SCHEMA, "judged table")


def table_summary(table: pl.DataFrame) -> dict:
    """Means, specials and the Betley misaligned share (verdicts.py) of a judged table."""
    flagged = with_misaligned(table)["misaligned"]
    scored = flagged.drop_nulls()
    return {
        "mean": {m: table[m].mean() for m in METRICS},
        "specials": {m: dict(Counter(v for v in table[f"{m}_special"].to_list() if v is not None)) for m in METRICS},
        "misaligned": int(scored.sum()) if scored.len() else 0,
        "misaligned_share": float(scored.mean()) if scored.len() else None,
    }


def main(argv: list[str] | None = None) -> int:
    """Judge one samples file outside Snakemake (the rule's script does the same):
    python -m workflow_scripts.judging.run --samples S --questions Q --dataset D
        --settings '{"kind": "openai", "model": "gpt-4.1-mini"}' --out O --summary J --writer NAME
    The API key comes from the environment variable named by api_key_env."""
    import argparse
    import sys

    import yaml

    parser = argparse.ArgumentParser(description=main.__doc__.split("\n")[0])
    parser.add_argument("--samples", required=True)
    parser.add_argument("--questions", required=True)
    parser.add_argument("--dataset", required=True)
    parser.add_argument("--settings", required=True, help="the judge block as YAML / JSON text, or @FILE")
    parser.add_argument("--out", required=True)
    parser.add_argument("--summary", required=True)
    parser.add_argument("--writer", required=True, help="names this job's cache file")
    parser.add_argument("--judge-model", default=None)
    parser.add_argument("--log", default=None)
    args = parser.parse_args(argv)
    text = Path(args.settings[1:]).read_text() if args.settings.startswith("@") else args.settings
    log_to(args.log)
    try:
        judge_samples(
            args.samples, args.questions, args.dataset, JudgeSettings.from_config(yaml.safe_load(text)),
            args.out, args.summary, writer=args.writer, judge_model_dir=args.judge_model,
            server_log=Path(args.out).with_suffix(".server.log"), handle_signals=True,
        )  # fmt: skip
    except (InputError, JudgingIncomplete, RuntimeError) as err:
        log.error("%s", err)
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
