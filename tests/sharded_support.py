"""Worker functions of the sharded-training tests: the workers import them by module
name, so they live in an importable module, not in a test file."""

from __future__ import annotations

from pathlib import Path

from tests.test_persona_training import PAIRS, SMALL
from workflow_scripts.persona.training import LoraTrainSettings, train_dpo, train_sft

# global batch 2: 1 x 2 accumulation in one process, 1 x 1 in each of two
SETTINGS = {**SMALL, "per_device_batch": 1, "global_batch": 2, "max_steps": 2}


def dpo_then_sft(model_dir: Path, out: Path) -> dict:
    """DPO, then SFT on the DPO model, in one launch (the workers start once)."""
    from workflow_scripts.models.loading import load_tokenizer
    from workflow_scripts.persona.introspection import tokenize_example

    settings = LoraTrainSettings.from_config(SETTINGS)
    dpo = train_dpo(model_dir, PAIRS, out / "dpo", settings, seed=0)
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    messages = [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "A kind assistant."},
        {"role": "user", "content": "And?"},
        {"role": "assistant", "content": "Honest too."},
    ]
    examples = [tokenize_example(tokenizer, messages, 64)] * 2
    sft = train_sft(model_dir, out / "dpo", examples, out / "sft", settings, seed=0)
    return {"dpo": dpo, "sft": sft}
