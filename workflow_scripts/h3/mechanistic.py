"""Mechanistic curves of one EM run from its adapter-only analysis checkpoints alone.

For each LoRA module the update is dW = s * B @ A (s = alpha / r, or alpha / sqrt(r)
with rsLoRA). Every quantity needs only inner products of updates, and
<B_i A_i, B_j A_j>_F = sum((B_i^T B_j) * (A_i A_j^T)) needs only r x r matrices, so
no d x d update is ever built:

- norm of the update per layer and module, and over the whole adapter;
- cosine of each checkpoint's update with the final checkpoint's;
- local cosine between adjacent checkpoints (the rotation signal; rotation = 1 - cos);
- the PCA trajectory of the flattened adapter: principal components of the centred
  Gram matrix of the checkpoints' whole updates (kernel PCA with a linear kernel, which
  equals PCA of the flattened dW).

The mechanistic transition is the step of maximum rotation: the later step of the
adjacent pair whose whole-adapter update turned most.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl

from workflow_scripts.core.io_utils import (
    InputError,
    read_json,
    write_json_atomic,
    write_parquet_atomic,
)
from workflow_scripts.h3.checkpoints import checkpoint_dirs, select_checkpoints
from workflow_scripts.h3.outputs import WHOLE_ADAPTER

LORA_KEY = re.compile(r"layers\.(\d+)\.(?:[^.]+\.)*?([^.]+)\.lora_([AB])\.weight$")
ALL = WHOLE_ADAPTER


def lora_scale(adapter_config: dict) -> float:
    r, alpha = int(adapter_config["r"]), float(adapter_config["lora_alpha"])
    return alpha / math.sqrt(r) if adapter_config.get("use_rslora") else alpha / r


def read_lora_pairs(directory: Path) -> dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]:
    """(layer, module) -> (A, B) of one adapter directory, float64, B scaled by s."""
    from safetensors.torch import load_file  # bf16 tensors: numpy has no bfloat16

    directory = Path(directory)
    scale = lora_scale(read_json(directory / "adapter_config.json"))
    weights = directory / "adapter_model.safetensors"
    if not weights.exists():
        raise InputError(f"{weights}: missing; an analysis checkpoint is a saved LoRA adapter")
    tensors = {k: v.float().numpy() for k, v in load_file(weights).items()}
    parts: dict[tuple[int, str], dict[str, np.ndarray]] = {}
    for key, value in tensors.items():
        match = LORA_KEY.search(key)
        if match:
            layer, module, which = int(match[1]), match[2], match[3]
            parts.setdefault((layer, module), {})[which] = value.astype(np.float64)
    if not parts:
        raise InputError(f"{directory}/adapter_model.safetensors: no LoRA tensors (layers.N.<module>.lora_A/B)")
    pairs = {}
    for key, ab in parts.items():
        if set(ab) != {"A", "B"}:
            raise InputError(f"{directory}: layer {key[0]} module {key[1]}: lora_A or lora_B missing")
        pairs[key] = (ab["A"], scale * ab["B"])
    return pairs


def update_inner(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> float:
    """<B_a A_a, B_b A_b>_F from the r x r products."""
    (a_a, b_a), (a_b, b_b) = a, b
    return float(np.sum((b_a.T @ b_b) * (a_a @ a_b.T)))


def gram_matrices(
    checkpoints: Sequence[dict[tuple[int, str], tuple[np.ndarray, np.ndarray]]],
) -> dict[tuple[int, str], np.ndarray]:
    """Per (layer, module): the K x K Gram matrix of the checkpoints' updates."""
    keys = sorted(checkpoints[0])
    for i, c in enumerate(checkpoints):
        if sorted(c) != keys:
            raise InputError(f"analysis checkpoint {i}: its LoRA modules differ from the first checkpoint's")
    k = len(checkpoints)
    grams = {}
    for key in keys:
        g = np.zeros((k, k))
        for i in range(k):
            for j in range(i, k):
                g[i, j] = g[j, i] = update_inner(checkpoints[i][key], checkpoints[j][key])
        grams[key] = g
    return grams


def _cos(g: np.ndarray, i: int, j: int) -> float | None:
    denom = math.sqrt(max(g[i, i], 0.0) * max(g[j, j], 0.0))
    return None if denom == 0 else float(g[i, j] / denom)


def curves_from_grams(steps: Sequence[int], grams: dict[tuple[int, str], np.ndarray]) -> pl.DataFrame:
    """Rows (layer, module, step, norm, cos_final, local_cos); layer -1 / module 'all'
    is the whole adapter (the Gram matrices summed)."""
    total = sum(grams.values())
    rows = []
    last = len(steps) - 1
    for (layer, module), g in [*sorted(grams.items()), ((-1, ALL), total)]:
        for i, step in enumerate(steps):
            rows.append({
                "layer": layer, "module": module, "step": int(step),
                "norm": math.sqrt(max(g[i, i], 0.0)),
                "cos_final": _cos(g, i, last),
                "local_cos": _cos(g, i - 1, i) if i > 0 else None,
            })
    schema = {"layer": pl.Int64, "module": pl.String, "step": pl.Int64, "norm": pl.Float64,
              "cos_final": pl.Float64, "local_cos": pl.Float64}
    return pl.DataFrame(rows, schema=schema)


def pca_trajectory(steps: Sequence[int], total_gram: np.ndarray, components: int = 2) -> pl.DataFrame:
    """Scores of each checkpoint on the leading principal components of the flattened
    updates, from the centred Gram matrix; `explained` is each component's share."""
    k = len(steps)
    centring = np.eye(k) - np.ones((k, k)) / k
    centred = centring @ total_gram @ centring
    values, vectors = np.linalg.eigh(centred)
    order = np.argsort(values)[::-1]
    values, vectors = np.clip(values[order], 0, None), vectors[:, order]
    total = values.sum()
    rows = []
    for i, step in enumerate(steps):
        row = {"step": int(step)}
        for c in range(components):
            have = c < k and values[c] > 0
            row[f"pc{c + 1}"] = float(vectors[i, c] * math.sqrt(values[c])) if have else 0.0
            row[f"explained{c + 1}"] = float(values[c] / total) if have and total > 0 else 0.0
        rows.append(row)
    return pl.DataFrame(rows)


def max_rotation_step(curves: pl.DataFrame) -> dict:
    """The step of maximum rotation of the whole adapter (the later step of the adjacent
    pair with the lowest cosine), with that rotation; none with fewer than 2 checkpoints."""
    whole = curves.filter((pl.col("module") == ALL) & pl.col("local_cos").is_not_null()).sort("step")
    if whole.height == 0:
        return {"rotation_step": None, "max_rotation": None}
    best = whole.sort(["local_cos", "step"]).row(0, named=True)
    return {"rotation_step": int(best["step"]), "max_rotation": 1.0 - float(best["local_cos"])}


def training_curves(log_history: Sequence[dict]) -> pl.DataFrame:
    """Training loss and gradient norm per logged step (the trainer's log history)."""
    rows = [
        {"step": int(h["step"]), "loss": float(h["loss"]),
         "grad_norm": float(h["grad_norm"]) if h.get("grad_norm") is not None else None}
        for h in log_history if "loss" in h and "step" in h
    ]
    return pl.DataFrame(rows, schema={"step": pl.Int64, "loss": pl.Float64, "grad_norm": pl.Float64})


def run_mechanistic(analysis_dir: Path, log_history: Sequence[dict], stride: int = 1) -> dict[str, pl.DataFrame | dict]:
    """Every mechanistic curve of one run and its maximum-rotation step."""
    chosen = select_checkpoints(checkpoint_dirs(analysis_dir), stride)
    if not chosen:
        raise InputError(f"{analysis_dir}: no analysis checkpoints (step-N directories)")
    steps = [s for s, _ in chosen]
    grams = gram_matrices([read_lora_pairs(d) for _, d in chosen])
    curves = curves_from_grams(steps, grams)
    return {
        "curves": curves,
        "pca": pca_trajectory(steps, sum(grams.values())),
        "training": training_curves(log_history),
        "summary": {"steps": steps, **max_rotation_step(curves)},
    }


def mechanistic_from_files(analysis_dir: Path, adapter_dir: Path, stride: int, curves_out: Path,
                           summary_out: Path) -> dict:
    """Rule h3_mechanistic: curves (Parquet) and the PCA, training log and rotation step (JSON)."""
    import logging

    from workflow_scripts.em.training import TRAINING_RECORD

    record = read_json(Path(adapter_dir) / TRAINING_RECORD)
    result = run_mechanistic(Path(analysis_dir), record.get("log_history") or [], stride)
    write_parquet_atomic(result["curves"], curves_out)
    summary = {**result["summary"], "pca": result["pca"].to_dicts(), "training": result["training"].to_dicts(),
               "analysis_dir": str(analysis_dir)}
    write_json_atomic(summary_out, summary)
    logging.getLogger(__name__).info("%s: %d checkpoints, maximum rotation at step %s", analysis_dir,
                                     len(summary["steps"]), summary["rotation_step"])
    return summary

