"""Residual-stream activations of judged answers: each answer (its prompt with the
chat template, then the answer's tokens) goes through the model once, in batches of
similar length, and every layer's output is averaged over the answer's tokens.

Written once per EM model (safetensors: `activations` (answers, layers, hidden) in
float32, with an index table of the answers and their scores beside it) and read by
the direction and any later analysis.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workflow_scripts.core.chat import messages_for, render
from workflow_scripts.core.io_utils import (
    InputError,
    read_parquet,
)
from workflow_scripts.core.progress import Progress
from workflow_scripts.h4.store import write_activations

log = logging.getLogger(__name__)

INDEX_COLUMNS = ["question_id", "sample_idx", "aligned", "coherent"]


def answer_token_ids(tokenizer: Any, prompt: str, system: str | None, response: str, max_length: int) -> tuple[list[int], int]:
    """Token ids of prompt + answer and where the answer starts (truncated answer
    tokens beyond `max_length` are dropped; at least one answer token is kept)."""
    prompt_ids = tokenizer(render(tokenizer, messages_for(prompt, system)), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(response or "", add_special_tokens=False)["input_ids"]
    if not answer_ids:  # an empty answer: read the end-of-turn position instead
        answer_ids = [tokenizer.eos_token_id]
    keep = max(1, max_length - len(prompt_ids))
    return prompt_ids + answer_ids[:keep], len(prompt_ids)


def extract_activations(model: Any, tokenizer: Any, rows: list[dict], batch_size: int, max_length: int,
                        progress: Progress | None = None) -> np.ndarray:
    """(answers, layers, hidden) float32: each layer's output averaged over answer
    tokens; one forward per answer, batched by length (right-padded)."""
    import torch

    from workflow_scripts.h4.hooks import captured_answer_means, n_layers

    encoded = [answer_token_ids(tokenizer, r["prompt"], r.get("system"), r["response"], max_length) for r in rows]
    order = sorted(range(len(rows)), key=lambda i: len(encoded[i][0]))
    layers = n_layers(model)
    hidden = model.config.hidden_size
    out = np.zeros((len(rows), layers, hidden), dtype=np.float32)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    device = next(model.parameters()).device
    body = model.get_decoder() if hasattr(model, "get_decoder") else model
    for start in range(0, len(order), batch_size):
        batch = order[start : start + batch_size]
        width = max(len(encoded[i][0]) for i in batch)
        ids = torch.full((len(batch), width), pad, dtype=torch.long)
        attention = torch.zeros((len(batch), width), dtype=torch.long)
        answer = torch.zeros((len(batch), width), dtype=torch.long)
        for row, i in enumerate(batch):
            tokens, answer_start = encoded[i]
            ids[row, : len(tokens)] = torch.tensor(tokens)
            attention[row, : len(tokens)] = 1
            answer[row, answer_start : len(tokens)] = 1
        ids, attention, answer = ids.to(device), attention.to(device), answer.to(device)
        with torch.inference_mode(), captured_answer_means(model, answer) as means:
            # the decoder alone: the logits over the vocabulary are not needed
            body(input_ids=ids, attention_mask=attention, use_cache=False)
        stacked = torch.stack([means[layer] for layer in range(layers)], dim=1).cpu().numpy()
        out[batch] = stacked
        if progress is not None:
            progress.update(len(batch), tokens=int(attention.sum()))
    return out


def judged_answers(judged_file: Path, seed: int) -> pl.DataFrame:
    """The judged answers of one EM run (its seed), in a fixed order."""
    table = read_parquet(judged_file)
    missing = [c for c in ("seed", "prompt", "system", "response", *INDEX_COLUMNS) if c not in table.columns]
    if missing:
        raise InputError(f"{judged_file}: missing columns {', '.join(missing)}")
    rows = table.filter(pl.col("seed") == seed).sort(["question_id", "sample_idx"])
    if rows.height == 0:
        raise InputError(f"{judged_file}: no answers of seed {seed}")
    return rows


def load_em_model(model_dir: Path, adapter_dir: Path | None, dtype: str | None = None) -> Any:
    """The persona model with its EM adapter merged (one forward per answer, no LoRA
    overhead)."""
    from workflow_scripts.models.loading import load_model

    model = load_model(model_dir, dtype=dtype)
    if adapter_dir is None:
        return model
    from peft import PeftModel

    from workflow_scripts.core.io_utils import check_safetensors

    check_safetensors(adapter_dir)
    return PeftModel.from_pretrained(model, str(adapter_dir)).merge_and_unload().eval()


def extract_run_activations(
    model_dir: Path,
    adapter_dir: Path,
    judged_file: Path,
    seed: int,
    out_file: Path,
    index_file: Path,
    settings: dict,
) -> np.ndarray:
    """Activations of every judged answer of one EM run, with its index table."""
    from workflow_scripts.models.loading import load_tokenizer

    rows = judged_answers(judged_file, seed)
    model = load_em_model(model_dir, adapter_dir, settings.get("dtype"))
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    with Progress("activations of answers", rows.height, log) as progress:
        activations = extract_activations(
            model, tokenizer, rows.to_dicts(), settings["batch_size"], settings["max_length"], progress
        )
    index = rows.select(INDEX_COLUMNS)
    write_activations(
        activations, index, out_file, index_file,
        {"model_dir": str(model_dir), "adapter": str(adapter_dir), "judged": str(judged_file), "seed": seed},
    )
    log.info("activations: %d answers x %d layers x %d", *activations.shape)
    return activations
