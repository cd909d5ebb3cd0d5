"""The I/O of the H4 stage: the judge step for H4 answers, and the analysis job that
reads every direction and judged H4 answer and writes the H4 tables and figures."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import read_parquet, write_json_atomic, write_parquet_atomic
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
from workflow_scripts.h4.outputs import TABLES
from workflow_scripts.h4.steering import NO_ABLATION, h4_condition, resolve_layer
from workflow_scripts.h4.store import read_direction

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


def first_direction(vector_files: list[str], summary_files: list[str], names: list[str]) -> tuple[str, object]:
    """The first direction that is not skipped: (its name, vector), or (reasons, None)."""
    reasons = []
    for vector_file, summary_file, name in zip(vector_files, summary_files, names, strict=True):
        summary, vector = read_direction(Path(vector_file), Path(summary_file))
        if vector is not None:
            return name, vector
        reasons.append(f"{name}: {summary['reason']}")
    return "; ".join(reasons), None


def steer_from_files(model_dir: Path, vector_files: list[str], summary_files: list[str], steer: dict,
                     dataset: str, questions: Path, out: Path, sampling: dict, model_name: str, persona: str):
    """Rule h4_steer: steer persona `persona` (no EM) with the reference persona's
    direction of `dataset` (its first seed with a direction)."""
    from workflow_scripts.h4.steering import H4Sampling, steer_persona

    names = [f"{steer['reference']}/{dataset}/s{seed}" for seed in steer["seeds"]]
    name, vector = first_direction(vector_files, summary_files, names)
    return steer_persona(model_dir, vector, name, steer["layer"], steer["scales"], questions, out,
                         H4Sampling.from_params(sampling), model_name, persona)


def ablate_from_files(model_dir: Path, adapter_dir: Path, vector_files: list[str], summary_files: list[str],
                      ablate: dict, dataset: str, seed: int, questions: Path, out: Path, sampling: dict,
                      model_name: str, persona: str):
    """Rule h4_ablate: project each source persona's direction out of persona+EM."""
    from workflow_scripts.h4.steering import H4Sampling, ablate_persona

    directions = {}
    for source, vector_file, summary_file in zip(ablate["sources"], vector_files, summary_files, strict=True):
        summary, vector = read_direction(Path(vector_file), Path(summary_file))
        if vector is None:
            log.info("direction %s/%s/s%d skipped: %s", source, dataset, seed, summary["reason"])
        directions[source] = vector
    return ablate_persona(model_dir, adapter_dir, dataset, seed, directions, ablate["layers"], questions, out,
                          H4Sampling.from_params(sampling), model_name, persona)


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
