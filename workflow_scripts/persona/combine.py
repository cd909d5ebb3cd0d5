"""The persona adapter: DPO and SFT LoRAs combined exactly.

    W_persona = W0 + dpo_weight * dW_dpo + sft_weight * dW_sft,
    dW_i = s_i * B_i @ A_i  (s_i = lora_alpha_i / r_i, or alpha / sqrt(r) with rsLoRA)

The SFT adapter was trained on top of W0 + dW_dpo (the DPO LoRA merged in), and
LoRA deltas add, so W0 + dW_dpo + dW_sft is exactly the SFT-trained model;
OCT's released personas use weights (1.0, 0.25).

Implementation: peft `add_weighted_adapter(combination_type="cat")`, which stacks
the ranks, A = [w1 s1 A1; w2 s2 A2], B = [B1, B2], r = alpha = r1 + r2 (scaling 1),
so B A = w1 dW_dpo + w2 dW_sft exactly. Two pitfalls handled: the new adapter
inherits `use_rslora` from the first adapter's config (scaling would become
sqrt(r1 + r2) instead of 1), so it is switched off for the call; and OCT's own merge
used combination_type="linear", which mixes sqrt-weighted A and B matrices and adds
cross terms B_i A_j: it is not the sum above and is not used.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import atomic_dir, read_json, write_json_atomic

COMBINATION_FILE = "persona_combination.json"
FORMULA = "W = W0 + dpo_weight * dW_dpo + sft_weight * dW_sft  (dW = scaling * B @ A; rank concatenation, exact)"


def combine_loaded(
    peft_model: Any, dpo: str, sft: str, dpo_weight: float, sft_weight: float, name: str
) -> None:
    """Add adapter `name` = dpo_weight x dpo + sft_weight x sft to a PeftModel that
    holds both, exactly (rank concatenation, rsLoRA inheritance neutralised)."""
    config = peft_model.peft_config[dpo]
    rslora = config.use_rslora
    config.use_rslora = False  # the layers' own scalings are already fixed
    try:
        peft_model.add_weighted_adapter(
            adapters=[dpo, sft],
            weights=[float(dpo_weight), float(sft_weight)],
            adapter_name=name,
            combination_type="cat",
        )
    finally:
        config.use_rslora = rslora
    new = peft_model.peft_config[name]
    if new.use_rslora or new.lora_alpha != new.r:
        raise RuntimeError(
            f"combined adapter '{name}' has scaling != 1 (r {new.r}, alpha {new.lora_alpha})"
        )


def combine_adapters(
    base_dir: str | os.PathLike,
    dpo_dir: str | os.PathLike,
    sft_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    dpo_weight: float = 1.0,
    sft_weight: float = 0.25,
) -> dict:
    """Write the combined persona adapter to `out_dir` with its formula and the
    hashes of its parts in `persona_combination.json`; returns that record."""
    from peft import PeftModel

    from workflow_scripts.models.loading import load_model

    base = load_model(base_dir, dtype=_config_dtype(base_dir), device="cpu")
    model = PeftModel.from_pretrained(base, str(dpo_dir), adapter_name="dpo")
    model.load_adapter(str(sft_dir), adapter_name="sft")
    combine_loaded(model, "dpo", "sft", dpo_weight, sft_weight, "persona")
    for adapter in ("dpo", "sft"):
        model.delete_adapter(adapter)
    record = {
        "formula": FORMULA,
        "dpo_weight": float(dpo_weight),
        "sft_weight": float(sft_weight),
        "method": "peft add_weighted_adapter(combination_type='cat'), use_rslora off for the call",
        "dpo_adapter": {"path": str(dpo_dir), "weights_sha256": weights_hash(dpo_dir)},
        "sft_adapter": {
            "path": str(sft_dir),
            "weights_sha256": weights_hash(sft_dir),
            "trained_on": "base with the DPO adapter merged in",
        },
        "rank": int(model.peft_config["persona"].r),
    }
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp, selected_adapters=["persona"])
        # peft writes a named adapter into a subfolder; keep the adapter at the root.
        sub = tmp / "persona"
        if sub.is_dir():
            for item in sub.iterdir():
                item.rename(tmp / item.name)
            sub.rmdir()
        _set_base(tmp / "adapter_config.json", base_dir)
        record["weights_sha256"] = weights_hash(tmp)
        write_json_atomic(tmp / COMBINATION_FILE, record)
        (tmp / "README.md").write_text(_readme(record), encoding="utf-8")
    return record


def _config_dtype(model_dir: str | os.PathLike) -> str:
    """The dtype the base model is stored in (bf16 for 7B models: half the memory of
    fp32); the LoRA weights are upcast to fp32 by peft either way."""
    config = read_json(Path(model_dir) / "config.json")
    dtype = str(config.get("dtype") or config.get("torch_dtype") or "float32")
    return dtype if dtype in ("float32", "bfloat16", "float16") else "float32"


def _set_base(config_path: Path, base_dir: str | os.PathLike) -> None:
    config = read_json(config_path)
    config["base_model_name_or_path"] = str(base_dir)
    config_path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _readme(record: dict) -> str:
    return (
        "# Persona adapter (DPO + SFT, combined exactly)\n\n"
        f"    {record['formula']}\n\n"
        f"dpo_weight = {record['dpo_weight']:g}, sft_weight = {record['sft_weight']:g}, "
        f"rank {record['rank']} (ranks of the two adapters concatenated, scaling 1).\n"
        "The SFT adapter was trained on the base model with the DPO adapter merged in, "
        "so with sft_weight 1 this is exactly the SFT-trained model.\n"
        f"DPO adapter sha256 {record['dpo_adapter']['weights_sha256']}, "
        f"SFT adapter sha256 {record['sft_adapter']['weights_sha256']}.\n"
    )
