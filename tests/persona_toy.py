"""A toy causal LM for persona tests: SmolLM2's real tokenizer and chat template on
a randomly initialised 2-layer Llama (hidden size 64), so training, generation,
merging and judging run in a second. Its text is gibberish; tests check structure
and numbers, not quality."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from workflow_scripts.models.loading import MODEL_INFO


def build_toy_model(tokenizer_dir: Path, out_dir: Path, seed: int = 0) -> Path:
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    if (tokenizer_dir / "generation_config.json").exists():
        shutil.copyfile(
            tokenizer_dir / "generation_config.json", out_dir / "generation_config.json"
        )
    (out_dir / MODEL_INFO).write_text(
        '{"model": "toy", "identity": "toy", "weights_sha256": "toy"}\n'
    )
    return out_dir


@pytest.fixture(scope="session")
def toy_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    return build_toy_model(Path(tiny_model_dir), tmp_path_factory.mktemp("toy") / "model")
