"""Secondary judges (config `judges.secondary`): each scores the answers of a primary
judged table (all, or a stratified subsample: judging.subsample) with its own judge
settings, through the same judge job as the primary (cache, accounting, error budget,
snapshot pin), into a judged table of the same schema."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.io_utils import InputError, read_parquet
from workflow_scripts.core.schema import JUDGED_SCHEMA, SAMPLE_SCHEMA
from workflow_scripts.judging.run import judge_frame
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.subsample import Subsample, choose, stratum_counts


@dataclass(frozen=True)
class SecondaryJudge:
    name: str
    judge: dict  # the `judge:` keys of this judge as configured
    subsample: Subsample

    def settings(self) -> JudgeSettings:
        return JudgeSettings.from_config(self.judge, f"judges.secondary.{self.name}.judge")


def secondary_judges(config: Mapping[str, Any]) -> dict[str, SecondaryJudge]:
    """Every secondary judge of a (validated) config, by name."""
    block = config.get("judges") or {}
    common = block.get("subsample") or {}
    judges = {}
    for name, entry in (block.get("secondary") or {}).items():
        where = f"judges.secondary.{name}"
        spec = Subsample.from_config({**common, **(entry.get("subsample") or {})}, f"{where}.subsample")
        judges[name] = SecondaryJudge(name, dict(entry["judge"]), spec)
        judges[name].settings()  # a bad kind, method or key is an error at parse time
    return judges


def judge_secondary(
    primary_path: str | os.PathLike,
    questions_path: str | os.PathLike,
    dataset: str,
    settings: JudgeSettings,
    subsample: Subsample,
    out_path: str | os.PathLike,
    summary_path: str | os.PathLike,
    *,
    writer: str,
    judge_model_dir: str | os.PathLike | None = None,
    server_log: str | os.PathLike = "logs/judge_server.log",
    environ: Mapping[str, str] | None = None,
    handle_signals: bool = False,
) -> dict:
    """Judge the chosen answers of a primary judged table; returns the summary."""
    primary = read_parquet(primary_path)
    missing = [c for c in JUDGED_SCHEMA if c not in primary.columns]
    if missing:
        raise InputError(f"{primary_path}: missing columns {', '.join(missing)}; expected a judged table")
    chosen = choose(primary, subsample)
    extra = {
        "primary": str(primary_path),
        "primary_judge": primary["judge"][0] if primary.height else None,
        "subsample": asdict(subsample),
        "strata": stratum_counts(primary, chosen, subsample.low_score_below),
    }
    return judge_frame(
        chosen.select(list(SAMPLE_SCHEMA)), str(Path(primary_path)), questions_path, dataset, settings, out_path,
        summary_path, writer=writer, judge_model_dir=judge_model_dir, server_log=server_log, environ=environ,
        handle_signals=handle_signals, extra_summary=extra,
    )  # fmt: skip
