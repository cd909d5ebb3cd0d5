"""The H4 analysis job: reads every direction and judged H4 answer, writes the H4
tables and figures (workflow_scripts/h4/analysis.py holds the statistics)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import read_parquet
from workflow_scripts.core.schema import JUDGED_SCHEMA
from workflow_scripts.h4.analysis import (
    ABLATION,
    INDUCED,
    H4TestSettings,
    adjust_and_judge,
    direction_rows,
    directions_table,
    flagged,
    geometry_table,
    shares,
    test_rows,
)
from workflow_scripts.h4.conditions import NO_ABLATION, h4_condition, resolve_layer
from workflow_scripts.h4.outputs import TABLES
from workflow_scripts.h4.store import read_direction

log = logging.getLogger(__name__)


def _with_condition(judged: pl.DataFrame) -> pl.DataFrame:
    conditions = [h4_condition(s) for s in judged["sampling"].to_list()]
    return judged.with_columns(
        pl.Series("scale", [c.get("scale") for c in conditions], dtype=pl.Float64),
        pl.Series("source", [c.get("source") for c in conditions], dtype=pl.String),
        pl.Series("direction", [c.get("direction") for c in conditions], dtype=pl.String),
        pl.Series("layer", [c.get("layer") for c in conditions], dtype=pl.Int64),
    )

def _read_judged(path: str | Path, s: H4TestSettings) -> pl.DataFrame:
    return flagged(_with_condition(read_parquet(path)), s)

def analyse(
    directions: Mapping[tuple[str, str, str, int], tuple[str, str]],
    steered: Mapping[tuple[str, str, str], str],
    ablated: Mapping[tuple[str, str, str, int], str],
    settings: H4TestSettings,
    steer_layer: int | None,
) -> tuple[dict[str, pl.DataFrame], dict[str, int]]:
    """Every H4 table, and the steering layer per model (for the heatmap)."""
    summaries, vectors, rows = {}, [], []
    for (model, persona, dataset, seed), (vector_file, summary_file) in directions.items():
        summary, vector = read_direction(Path(vector_file), Path(summary_file))
        key = {"model": model, "persona": persona, "dataset": dataset, "seed": seed}
        summaries[(model, persona, dataset, seed)] = summary
        rows += direction_rows(key, summary)
        if vector is not None:
            vectors.append((key, vector))
    layer_by_model = {}
    for key, vector in vectors:
        layer_by_model.setdefault(key["model"], resolve_layer(steer_layer, vector.shape[0]))
    tables = {"h4_directions": directions_table(rows), "h4_geometry": geometry_table(vectors)}

    steer_answers = {key: _read_judged(path, settings) for key, path in steered.items()}
    steer_rows = [
        shares(a.with_columns(pl.lit(m).alias("model"), pl.lit(p).alias("persona"), pl.lit(d).alias("dataset")),
               ["model", "persona", "dataset", "direction", "layer", "scale"])
        for (m, p, d), a in steer_answers.items() if a.height
    ]
    tables["h4_steering"] = pl.concat(steer_rows) if steer_rows else shares(
        _empty_flagged(settings).with_columns(pl.lit(None, pl.String).alias("model")),
        ["model", "persona", "dataset", "direction", "layer", "scale"])
    ablate_answers = {key: _read_judged(path, settings) for key, path in ablated.items()}
    ablate_rows = [
        shares(a.with_columns(pl.lit(m).alias("model"), pl.lit(p).alias("persona"), pl.lit(d).alias("dataset")),
               ["model", "persona", "dataset", "seed", "source"])
        for (m, p, d, _), a in ablate_answers.items() if a.height
    ]
    tables["h4_ablation"] = pl.concat(ablate_rows) if ablate_rows else shares(
        _empty_flagged(settings).with_columns(pl.lit(None, pl.String).alias("model"), pl.lit(None, pl.String).alias("source")),
        ["model", "persona", "dataset", "seed", "source"])
    tables["h4_tests"] = _tests(summaries, steer_answers, ablate_answers, settings)
    return tables, layer_by_model

def _empty_flagged(s: H4TestSettings) -> pl.DataFrame:
    return _with_condition(flagged(pl.DataFrame(schema=JUDGED_SCHEMA), s))

def _tests(summaries, steer_answers, ablate_answers, s: H4TestSettings) -> pl.DataFrame:
    ref = s.reference_persona
    rows = []
    pairs = sorted({(m, d) for m, _, d, _ in summaries})
    for model, dataset in pairs:
        personas = sorted({p for m, p, d, _ in summaries if (m, d) == (model, dataset) and p != ref})
        seeds = sorted({sd for m, p, d, sd in summaries if (m, d) == (model, dataset)})
        ref_reason = "; ".join(
            f"reference direction s{sd}: {summaries[(model, ref, dataset, sd)]['reason']}" for sd in seeds
            if summaries.get((model, ref, dataset, sd), {}).get("status") == "skipped")
        for persona in personas:
            cells = None
            ps, rs = steer_answers.get((model, persona, dataset)), steer_answers.get((model, ref, dataset))
            if ps is not None and rs is not None and ps.height and rs.height:
                cells = [ps.filter(pl.col("scale") == s.test_scale), ps.filter(pl.col("scale") == 0.0),
                         rs.filter(pl.col("scale") == s.test_scale), rs.filter(pl.col("scale") == 0.0)]
            rows.append(test_rows(model, dataset, persona, INDUCED, s.test_scale, cells,
                                  ref_reason or "no steered answers", 1, s))
            used = []
            for seed in seeds:
                pa, ra = ablate_answers.get((model, persona, dataset, seed)), ablate_answers.get((model, ref, dataset, seed))
                if pa is None or ra is None:
                    continue
                parts = [pa.filter(pl.col("source") == NO_ABLATION), pa.filter(pl.col("source") == ref),
                         ra.filter(pl.col("source") == NO_ABLATION), ra.filter(pl.col("source") == ref)]
                if all(p.height for p in parts):
                    used.append(parts)
            cells = [pl.concat([u[i] for u in used]) for i in range(4)] if used else None
            rows.append(test_rows(model, dataset, persona, ABLATION, None, cells,
                                  ref_reason or "no ablated answers", len(used), s))
    return adjust_and_judge(rows, s.alpha)

def write_tables(tables: Mapping[str, pl.DataFrame], paths: Mapping[str, str | Path]) -> None:
    from workflow_scripts.core.io_utils import atomic_path

    for name in TABLES:
        with atomic_path(paths[name], suffix=".csv") as tmp:
            tables[name].write_csv(tmp)

def run_analysis(directions, steered, ablated, settings: H4TestSettings, steer_layer: int | None,
                 table_paths: Mapping[str, str | Path], figure_paths: Mapping[str, str | Path], dpi: int) -> dict:
    """Rule h4_analysis: the tables (CSV) and the two figures."""
    from workflow_scripts.h4.figures import geometry_heatmap, steering_curves

    tables, layer_by_model = analyse(directions, steered, ablated, settings, steer_layer)
    write_tables(tables, table_paths)
    geometry_heatmap(tables["h4_geometry"], layer_by_model, Path(figure_paths["h4_geometry"]), dpi)
    steering_curves(tables["h4_steering"], Path(figure_paths["h4_steering"]), dpi)
    for name, table in tables.items():
        log.info("%s: %d rows", name, table.height)
    return tables


def analysis_from_files(vectors: list[str], summaries: list[str], steered: list[str], ablated: list[str],
                        keys: dict, settings: dict, layer: int | None, table_paths: Mapping[str, str],
                        figure_paths: Mapping[str, str], dpi: int) -> dict:
    """Rule h4_analysis: the files in the order of `keys` (rules/common.smk)."""
    directions = {(*k[:3], int(k[3])): (v, j)
                  for k, v, j in zip(keys["directions"], vectors, summaries, strict=True)}
    steer = {tuple(k): path for k, path in zip(keys["steered"], steered, strict=True)}
    ablate = {(*k[:3], int(k[3])): path for k, path in zip(keys["ablated"], ablated, strict=True)}
    return run_analysis(directions, steer, ablate, H4TestSettings(**settings), layer, table_paths, figure_paths, dpi)


def read_h4_tests(path: str | Path) -> pl.DataFrame:
    """The table h4_tests with its column types."""
    from workflow_scripts.core.io_utils import InputError
    from workflow_scripts.h4.analysis import TEST_SCHEMA

    try:
        return pl.read_csv(path, schema=TEST_SCHEMA)
    except (FileNotFoundError, pl.exceptions.PolarsError) as err:
        raise InputError(f"{path}: not the table h4_tests (CSV with columns {', '.join(TEST_SCHEMA)}): {err}") from None
