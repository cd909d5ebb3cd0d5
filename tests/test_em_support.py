"""Shared builders for the EM and fold tests (no tests here).

A 2-layer cut of the tiny real model (SmolLM2-135M-Instruct: its tokenizer, chat
template and weights, fewer layers) keeps training tests to seconds on 2 cores;
the code path is the one the workflow runs. Both are cached across sessions like
`tiny_model_dir`, so importing these fixtures into several modules costs nothing.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import atomic_dir, write_json_atomic
from workflow_scripts.models.loading import MODEL_INFO

MICRO_LAYERS = 2


def _cache_root() -> Path:
    return Path(os.environ.get("PERSONA_EM_TEST_CACHE", Path.home() / ".cache" / "persona-em"))


def build_micro_model(tiny_dir: Path, out_dir: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(
        tiny_dir, num_hidden_layers=MICRO_LAYERS, dtype=torch.float32
    )
    with atomic_dir(out_dir) as tmp:
        model.save_pretrained(tmp)
        AutoTokenizer.from_pretrained(tiny_dir).save_pretrained(tmp)
        write_json_atomic(
            tmp / MODEL_INFO,
            {
                "model": "smollm2-micro",
                "identity": f"test:smollm2-135m-{MICRO_LAYERS}-layers",
                "source": "test",
                "weights_sha256": weights_hash(tmp),
            },
        )
    return out_dir


def build_persona_adapter(model_dir: Path, out_dir: Path, random_b: bool = True, seed: int = 7) -> Path:
    """A LoRA adapter standing in for a persona adapter. peft initialises B to zero
    (no effect); `random_b` draws it too, so folding changes the model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=16,
        target_modules=["q_proj", "v_proj", "down_proj"],
        init_lora_weights=not random_b,
    )
    peft_model = get_peft_model(model, config)
    with atomic_dir(out_dir) as tmp:
        peft_model.save_pretrained(tmp)
        (tmp / "persona_adapter.json").write_text(json.dumps({"combine": {"dpo": 1.0, "sft": 0.25}}))
    return out_dir


@pytest.fixture(scope="session")
def micro_model_dir(tiny_model_dir) -> Path:
    out = _cache_root() / f"smollm2-135m-{MICRO_LAYERS}layers"
    if not (out / MODEL_INFO).exists():
        build_micro_model(tiny_model_dir, out)
    return out


@pytest.fixture(scope="session")
def persona_adapter_dir(micro_model_dir, tmp_path_factory) -> Path:
    return build_persona_adapter(micro_model_dir, tmp_path_factory.mktemp("persona") / "adapter")


@pytest.fixture(scope="session")
def folded_model_dir(micro_model_dir, persona_adapter_dir, tmp_path_factory) -> Path:
    from workflow_scripts.persona.fold import fold_persona

    out = tmp_path_factory.mktemp("folded") / "model"
    fold_persona(
        micro_model_dir,
        persona_adapter_dir,
        out,
        model_name="smollm2-micro",
        persona="goodness",
        source_label="constitution:resources/constitutions/goodness.json",
    )
    return out
