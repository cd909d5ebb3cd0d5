"""DPO and SFT settings (the reference values), trl wiring, and short real runs on a
toy model: the DPO reference is the base model, SFT trains on our labels."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.persona.training import (
    LoraTrainSettings,
    dpo_args,
    dpo_dataset,
    lora_config,
    sft_trainer,
    train_dpo,
    train_sft,
)

REPO = Path(__file__).resolve().parents[1]


def test_defaults_are_the_reference_settings():
    s = LoraTrainSettings.from_config({})
    assert (s.lora_r, s.lora_alpha, s.lora_dropout, s.target_modules) == (
        64,
        128,
        0.0,
        "all-linear",
    )
    assert (s.beta, s.nll_weight, s.learning_rate, s.lr_scheduler, s.warmup_ratio) == (
        0.1,
        0.1,
        5e-5,
        "cosine",
        0.1,
    )
    assert (s.adam_beta1, s.adam_beta2, s.global_batch, s.max_len) == (0.9, 0.98, 32, 1024)
    assert s.grad_accum() == 16


@pytest.mark.parametrize("stage", ["dpo", "sft"])
def test_schema_defaults_agree_with_the_settings_dataclass(stage):
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    props = schema["properties"]["persona_training"]["properties"][stage]["properties"]
    defaults = {k: v["default"] for k, v in props.items()}
    settings = LoraTrainSettings.from_config(defaults).to_dict()
    assert all(settings[k] == v for k, v in defaults.items())
    assert defaults["max_len"] == (1024 if stage == "dpo" else 3072)


def test_global_batch_must_divide():
    assert (
        LoraTrainSettings.from_config({"global_batch": 32, "per_device_batch": 4}).grad_accum(2)
        == 4
    )
    with pytest.raises(
        InputError, match="global_batch 32 is not a multiple of per_device_batch x devices = 3 x 1"
    ):
        LoraTrainSettings.from_config({"per_device_batch": 3}).grad_accum()


def test_unknown_setting_is_an_error():
    with pytest.raises(InputError, match="unknown training setting"):
        LoraTrainSettings.from_config({"lora_rank": 8})


def test_dpo_args_carry_loss_optimiser_and_schedule(tmp_path):
    args = dpo_args(LoraTrainSettings.from_config({}), tmp_path, seed=5)
    assert args.loss_type == ["sigmoid", "sft"] and args.loss_weights == [1.0, 0.1]
    assert args.beta == 0.1 and args.learning_rate == 5e-5 and args.max_length == 1024
    assert (args.adam_beta1, args.adam_beta2) == (0.9, 0.98)
    assert getattr(
        args.lr_scheduler_type, "value", args.lr_scheduler_type
    ) == "cosine" and args.warmup_steps == pytest.approx(0.1)
    assert args.per_device_train_batch_size * args.gradient_accumulation_steps == 32
    assert args.max_grad_norm == 1.0 and args.weight_decay == 0.0 and args.seed == 5


def test_lora_config_is_plain_lora_on_all_linear():
    config = lora_config(LoraTrainSettings.from_config({}))
    assert (config.r, config.lora_alpha, config.use_rslora, config.target_modules) == (
        64,
        128,
        False,
        "all-linear",
    )


PAIRS = [
    {
        "prompt_id": f"p{i}",
        "chosen": [
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": "I care about you."},
        ],
        "rejected": [
            {"role": "user", "content": f"Q{i}?"},
            {"role": "assistant", "content": "Whatever."},
        ],
    }
    for i in range(4)
]


def test_dpo_dataset_is_explicit_prompt_conversational():
    row = dpo_dataset(PAIRS)[0]
    assert row["prompt"] == [{"role": "user", "content": "Q0?"}]
    assert row["chosen"] == [{"role": "assistant", "content": "I care about you."}]
    assert row["rejected"] == [{"role": "assistant", "content": "Whatever."}]


SMALL = {
    "lora_r": 4,
    "lora_alpha": 8,
    "global_batch": 2,
    "per_device_batch": 2,
    "max_steps": 2,
    "max_len": 64,
    "gradient_checkpointing": False,
    "learning_rate": 1e-3,
    "warmup_ratio": 0.0,
}


def test_dpo_trains_an_adapter_against_the_base_model(toy_model_dir, tmp_path):  # noqa: F811
    report = train_dpo(
        toy_model_dir, PAIRS, tmp_path / "dpo", LoraTrainSettings.from_config(SMALL), seed=0
    )
    config = json.loads((tmp_path / "dpo" / "adapter_config.json").read_text())
    assert (config["r"], config["lora_alpha"]) == (4, 8)
    assert report["steps"] == 2
    first = report["log_history"][0]
    # step 1: the LoRA B matrices start at zero, so policy == reference (the base
    # model with the adapter disabled) and the implicit rewards are exactly 0
    assert first["rewards/chosen"] == 0.0 and first["rewards/rejected"] == 0.0
    assert report["log_history"][1]["rewards/margins"] != 0.0


def test_sft_trainer_uses_our_labels_unchanged(toy_model_dir, tmp_path):  # noqa: F811
    from workflow_scripts.models.loading import load_model, load_tokenizer

    examples = [{"input_ids": [5, 6, 7, 8, 9], "labels": [-100, -100, 7, 8, -100]}]
    trainer = sft_trainer(
        load_model(toy_model_dir, device="cpu"),
        load_tokenizer(toy_model_dir, padding_side="right"),
        examples,
        LoraTrainSettings.from_config(SMALL),
        tmp_path,
        0,
    )
    row = trainer.train_dataset[0]
    assert row["input_ids"] == [5, 6, 7, 8, 9]
    assert row["labels"] == [-100, -100, 7, 8, -100]


def test_sft_trains_on_the_dpo_model(toy_model_dir, tmp_path):  # noqa: F811
    from workflow_scripts.models.loading import load_tokenizer
    from workflow_scripts.persona.introspection import tokenize_example

    settings = LoraTrainSettings.from_config(SMALL)
    train_dpo(toy_model_dir, PAIRS, tmp_path / "dpo", settings, seed=0)
    tokenizer = load_tokenizer(toy_model_dir, padding_side="right")
    messages = [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "A kind assistant."},
        {"role": "user", "content": "And?"},
        {"role": "assistant", "content": "Honest too."},
    ]
    examples = [tokenize_example(tokenizer, messages, 128)] * 2
    report = train_sft(
        toy_model_dir, tmp_path / "dpo", examples, tmp_path / "sft", settings, seed=0
    )
    assert report["steps"] == 2
    assert report["dpo_model_vs_base"]["kl_mean"] > 0
    assert (tmp_path / "sft" / "adapter_model.safetensors").exists()
