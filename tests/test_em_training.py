"""EM training settings, LoRA/trl configuration and the KL term (no model needed)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch
import yaml

from workflow_scripts.em.training import (
    EmTrainSettings,
    kl_batches,
    lora_config,
    sft_config,
    token_kl,
)


def schema_defaults() -> dict:
    schema = yaml.safe_load(Path("config/schema.yaml").read_text())
    props = schema["properties"]["em_training"]["properties"]
    return {k: v["default"] for k, v in props.items() if "default" in v}


def test_schema_defaults_are_the_reference_recipe():
    settings = EmTrainSettings.from_params({**schema_defaults(), "kind": "sft", "kl_weight": 1.0, "seed": 3})
    assert (settings.lora_r, settings.lora_alpha, settings.use_rslora, settings.lora_dropout) == (32, 64, True, 0.0)
    assert settings.target_modules == ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    assert (settings.learning_rate, settings.lr_scheduler, settings.warmup_steps) == (1e-5, "linear", 5)
    assert (settings.weight_decay, settings.epochs, settings.max_length) == (0.01, 1, 2048)
    assert (settings.per_device_batch, settings.grad_accum, settings.global_batch) == (2, 8, 16)
    assert settings.seed == 3
    assert settings.extra == {}
    # the dataclass defaults agree with the schema's
    assert EmTrainSettings(seed=3) == settings


def test_unknown_params_are_kept_aside_not_dropped():
    settings = EmTrainSettings.from_params({"lora_r": 8, "future_knob": 1})
    assert settings.lora_r == 8
    assert settings.extra == {"future_knob": 1}


def test_lora_config_uses_rslora_scaling():
    config = lora_config(EmTrainSettings())
    assert config.use_rslora and config.r == 32 and config.lora_alpha == 64
    assert set(config.target_modules) == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    # peft: scaling = alpha / sqrt(r) with rsLoRA
    assert config.lora_alpha / math.sqrt(config.r) == pytest.approx(11.3137, rel=1e-4)


def test_sft_config_trains_on_completions_only_on_every_row(tmp_path):
    settings = EmTrainSettings(seed=5, save_steps=7)
    config = sft_config(settings, str(tmp_path), use_bf16=False)
    assert config.completion_only_loss is True
    assert config.assistant_only_loss is False
    assert config.packing is False
    assert config.eval_strategy == "no"  # no held-out split
    # analysis checkpoints on: the trainer's own are for resume only
    assert (config.save_steps, config.save_total_limit) == (7, 1)
    off = EmTrainSettings(save_steps=7, analysis_checkpoints={"every": 0, "log_spaced": 0})
    assert sft_config(off, str(tmp_path), use_bf16=False).save_total_limit is None  # all kept
    assert (config.seed, config.data_seed) == (5, 5)
    assert config.per_device_train_batch_size * config.gradient_accumulation_steps == 16
    assert config.lr_scheduler_type == "linear" and config.warmup_steps == 5
    assert config.max_length == 2048 and config.weight_decay == 0.01


def test_token_kl_is_reference_weighted_and_masked():
    torch.manual_seed(0)
    ref = torch.randn(2, 3, 11)
    cur = torch.randn(2, 3, 11)
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    p_ref = ref.log_softmax(-1)
    p_cur = cur.log_softmax(-1)
    per_token = (p_ref.exp() * (p_ref - p_cur)).sum(-1)
    expected = (per_token[0, 0] + per_token[0, 1] + per_token[1, 0]) / 3
    assert float(token_kl(ref, cur, mask)) == pytest.approx(float(expected), rel=1e-5)
    assert float(token_kl(ref, ref, mask)) == pytest.approx(0.0, abs=1e-6)
    # Model-Organisms' value is ours divided by the vocabulary size
    mo = torch.nn.functional.kl_div(p_cur, p_ref, log_target=True, reduction="none")
    full_mask = mask.unsqueeze(-1).expand_as(mo)
    mo_value = (mo * full_mask).sum() / full_mask.sum()
    assert float(mo_value) * 11 == pytest.approx(float(expected), rel=1e-5)


def test_kl_batches_cycle_over_the_reference_set_with_a_seed():
    sequences = [[1] * n for n in range(1, 6)]
    first = [b["attention_mask"].sum(1).tolist() for _, b in zip(range(4), kl_batches(sequences, 2, 0, seed=1), strict=False)]
    again = [b["attention_mask"].sum(1).tolist() for _, b in zip(range(4), kl_batches(sequences, 2, 0, seed=1), strict=False)]
    assert first == again
    assert sorted(n for batch in first[:3] for n in batch) == [1, 2, 3, 4, 5]  # one pass covers every row once
    batch = next(kl_batches([[5, 6, 7], [8]], 2, pad_id=0, seed=0))
    rows = sorted(zip(batch["input_ids"].tolist(), batch["attention_mask"].tolist(), strict=True))
    assert rows == [([5, 6, 7], [1, 1, 1]), ([8, 0, 0], [1, 0, 0])]


def test_analysis_steps_are_log_spaced_or_strided_and_end_at_the_final_step():
    from workflow_scripts.em.training import analysis_steps

    assert analysis_steps({"every": 0, "log_spaced": 10}, 1000) == [1, 2, 5, 10, 22, 46, 100, 215, 464, 1000]
    assert analysis_steps({"every": 0, "log_spaced": 10}, 4) == [1, 2, 3, 4]
    assert analysis_steps({"every": 3, "log_spaced": 10}, 10) == [3, 6, 9, 10]
    assert analysis_steps({"every": 0, "log_spaced": 1}, 7) == [7]
    assert analysis_steps({"every": 0, "log_spaced": 0}, 7) == []
    on, off = EmTrainSettings(), EmTrainSettings(analysis_checkpoints={"every": 0, "log_spaced": 0})
    assert on.keeps_analysis_checkpoints and not off.keeps_analysis_checkpoints
