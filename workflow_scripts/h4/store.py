"""Directions on disk: `direction.safetensors` (tensor `direction`, (layers, hidden);
empty (0, 0) for a skipped run) and a JSON summary beside it (status, counts, norm and
stability per layer, where it came from)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl

from workflow_scripts.core.io_utils import (
    InputError,
    atomic_path,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from workflow_scripts.h4.directions import Direction


def write_direction(direction: Direction, vector_file: Path, summary_file: Path, meta: dict) -> dict:
    from safetensors.numpy import save_file

    vector = direction.vector if direction.vector is not None else np.zeros((0, 0), dtype=np.float32)
    summary = {**meta, **direction.summary()}
    with atomic_path(vector_file) as tmp:
        save_file({"direction": np.ascontiguousarray(vector)}, str(tmp),
                  metadata={"h4": json.dumps(summary, sort_keys=True)})
    write_json_atomic(summary_file, summary)
    return summary


def read_direction(vector_file: Path, summary_file: Path) -> tuple[dict, np.ndarray | None]:
    """(summary, vector); the vector is None for a skipped run."""
    from safetensors.numpy import load_file

    summary = read_json(summary_file)
    if summary.get("status") not in ("ok", "skipped"):
        raise InputError(f"{summary_file}: status: expected ok or skipped, found {summary.get('status')!r}")
    if summary["status"] == "skipped":
        return summary, None
    try:
        vector = load_file(str(vector_file))["direction"]
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{vector_file}: not a direction file ({err})") from None
    if vector.ndim != 2 or vector.shape[0] != summary.get("layers"):
        raise InputError(f"{vector_file}: direction of shape {vector.shape}; {summary_file} says {summary.get('layers')} layers")
    return summary, vector


def direction_from_activations(activations_file: Path, index_file: Path, vector_file: Path, summary_file: Path,
                               settings: dict, meta: dict) -> dict:
    """Rule h4_direction: the direction of one EM run from its stored activations."""
    from workflow_scripts.core.io_utils import read_parquet
    from workflow_scripts.h4.directions import DirectionSettings, extract_direction

    activations = read_activations(activations_file)
    index = read_parquet(index_file)
    if index.height != activations.shape[0]:
        raise InputError(f"{index_file}: {index.height} answers, {activations_file} has {activations.shape[0]}")
    direction = extract_direction(
        activations, index["aligned"].to_numpy(), index["coherent"].to_numpy(),
        DirectionSettings.from_config(settings),
    )
    return write_direction(direction, vector_file, summary_file, meta)


def write_activations(activations: np.ndarray, index: pl.DataFrame, out_file: Path, index_file: Path,
                      metadata: dict) -> None:
    from safetensors.numpy import save_file

    with atomic_path(out_file) as tmp:
        save_file({"activations": activations}, str(tmp), metadata={"h4": json.dumps(metadata, sort_keys=True)})
    write_parquet_atomic(index, index_file)


def read_activations(path: Path) -> np.ndarray:
    from safetensors.numpy import load_file

    try:
        return load_file(str(path))["activations"]
    except (OSError, KeyError, ValueError) as err:
        raise InputError(f"{path}: not an activations file ({err})") from None
