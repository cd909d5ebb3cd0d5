"""I/O of rule h3_analysis: the judged checkpoint answers and mechanistic curves read
from files, the tables and figures written (workflow_scripts/h3/analysis.py)."""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import (
    InputError,
    atomic_path,
    read_json,
)
from workflow_scripts.h3.analysis import H3Settings, analyse
from workflow_scripts.h3.outputs import TABLES, h3_step

log = logging.getLogger(__name__)


def read_mechanistic(curves: Path, summary: Path) -> dict:
    content = read_json(summary)
    return {
        "curves": pl.read_parquet(curves),
        "pca": pl.DataFrame(content["pca"]) if content["pca"] else pl.DataFrame(schema={"step": pl.Int64}),
        "training": pl.DataFrame(content["training"], schema={"step": pl.Int64, "loss": pl.Float64,
                                                              "grad_norm": pl.Float64}),
        "summary": {k: content[k] for k in ("steps", "rotation_step", "max_rotation")},
    }


def read_judged_checkpoints(path: Path) -> pl.DataFrame:
    """Judged H3 answers with their checkpoint step as a column."""
    judged = pl.read_parquet(path)
    steps = [h3_step(s) for s in judged["sampling"].to_list()]
    if any(s is None for s in steps):
        raise InputError(f"{path}: answers without an H3 checkpoint step in their sampling record")
    return judged.with_columns(pl.Series("step", steps, dtype=pl.Int64))


def analysis_from_files(judged: Sequence[str], judged_keys: Sequence[Sequence], curves: Sequence[str],
                        summaries: Sequence[str], run_keys: Sequence[Sequence], settings: dict,
                        table_paths: Mapping[str, str], figure_paths: Mapping[str, str], dpi: int) -> dict:
    """Rule h3_analysis: the tables (CSV) and the two figures."""
    from workflow_scripts.h3.figures import curve_panels, transition_forest

    answers = {tuple(k): read_judged_checkpoints(Path(p)) for k, p in zip(judged_keys, judged, strict=True)}
    mechanistic = {
        (m, p, d, int(s)): read_mechanistic(Path(c), Path(j))
        for (m, p, d, s), c, j in zip(run_keys, curves, summaries, strict=True)
    }
    tables = analyse(answers, mechanistic, H3Settings(**settings))
    for name in TABLES:
        with atomic_path(table_paths[name], suffix=".csv") as tmp:
            tables[name].write_csv(tmp)
        log.info("%s: %d rows", name, tables[name].height)
    curve_panels(tables["h3_curves"], tables["h3_mechanistic"], Path(figure_paths["h3_curves"]), dpi)
    transition_forest(tables["h3_transitions"], Path(figure_paths["h3_transitions"]), dpi)
    return tables


def read_h3_tests(path: str | Path) -> pl.DataFrame:
    from workflow_scripts.h3.analysis import TEST_SCHEMA

    return pl.read_csv(path, schema_overrides=TEST_SCHEMA)
