"""The judge step of H4 answers: the study's judge and cache (judging.run)."""

from __future__ import annotations

import logging
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import read_parquet, write_json_atomic, write_parquet_atomic
from workflow_scripts.core.schema import JUDGED_SCHEMA

log = logging.getLogger(__name__)


def judge_h4_samples(samples: Path, questions: Path, dataset: str, settings, out: Path, summary: Path,
                     **judge_options) -> dict:
    """Judge H4 answers with the study's judge and cache; an empty samples file (no
    direction to steer or ablate with) gives an empty judged table."""
    from workflow_scripts.judging.run import judge_samples

    if read_parquet(samples).height == 0:
        write_parquet_atomic(pl.DataFrame(schema=JUDGED_SCHEMA), out)
        record = {"samples": str(samples), "answers": 0, "skipped": "no answers: no direction was available"}
        write_json_atomic(summary, record)
        log.info("%s: no answers to judge", samples)
        return record
    return judge_samples(samples, questions, dataset, settings, out, summary, **judge_options)
