"""fold_persona: merge the persona adapter, prove it changed the logits, record it."""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_em_support)
from __future__ import annotations

import pytest
import torch

from tests.test_em_support import (  # noqa: F401
    build_persona_adapter,
    folded_model_dir,
    micro_model_dir,
    persona_adapter_dir,
)
from workflow_scripts.core.composition import (
    CompositionError,
    next_token_logprobs,
    read_composition,
)
from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import InputError, read_json
from workflow_scripts.models.loading import load_model, load_tokenizer, model_info
from workflow_scripts.persona.fold import adapter_source_label, fold_persona, resolve_adapter_dir


def test_folded_model_differs_from_base_and_records_what_was_folded(
    micro_model_dir, persona_adapter_dir, folded_model_dir
):
    tokenizer = load_tokenizer(micro_model_dir)
    base = next_token_logprobs(load_model(micro_model_dir, device="cpu"), tokenizer)
    folded = next_token_logprobs(load_model(folded_model_dir, device="cpu"), tokenizer)
    assert (base - folded).abs().max() > 1e-3

    composition = read_composition(folded_model_dir)
    assert composition.base_identity == model_info(micro_model_dir)["identity"]
    assert composition.base_sha256 == model_info(micro_model_dir)["weights_sha256"]
    [adapter] = composition.adapters
    assert (adapter.role, adapter.name, adapter.weight) == ("persona", "goodness", 1.0)
    assert adapter.weights_sha256 == weights_hash(persona_adapter_dir)
    assert adapter.source == "constitution:resources/constitutions/goodness.json"
    check = composition.checks["logit_divergence_vs_base"]
    assert check["kl_mean"] > 1e-6 and check["finite"]
    assert composition.checks["folded_weights_sha256"] == weights_hash(folded_model_dir)
    fold = read_json(folded_model_dir / "fold.json")
    assert fold["adapter_config"]["r"] == 8
    assert fold["files"]["persona_adapter.json"] == {"combine": {"dpo": 1.0, "sft": 0.25}}
    assert (folded_model_dir / "tokenizer.json").exists()


def test_merged_weights_equal_base_plus_lora_delta(micro_model_dir, persona_adapter_dir, folded_model_dir):
    from safetensors.torch import load_file

    base = load_model(micro_model_dir, device="cpu").state_dict()
    folded = load_model(folded_model_dir, device="cpu").state_dict()
    adapter = load_file(persona_adapter_dir / "adapter_model.safetensors")
    config = read_json(persona_adapter_dir / "adapter_config.json")
    scaling = config["lora_alpha"] / config["r"]
    key = "model.layers.0.self_attn.q_proj.weight"
    prefix = "base_model.model.model.layers.0.self_attn.q_proj"
    delta = adapter[f"{prefix}.lora_B.weight"] @ adapter[f"{prefix}.lora_A.weight"] * scaling
    torch.testing.assert_close(folded[key], base[key] + delta, rtol=1e-4, atol=1e-5)
    untouched = "model.layers.0.self_attn.k_proj.weight"
    assert torch.equal(folded[untouched], base[untouched])


def test_adapter_without_effect_is_refused(micro_model_dir, tmp_path):
    inert = build_persona_adapter(micro_model_dir, tmp_path / "inert", random_b=False)
    with pytest.raises(CompositionError, match="the adapter had no effect"):
        fold_persona(micro_model_dir, inert, tmp_path / "out", "m", "inert", "constitution:x.json")
    assert not (tmp_path / "out").exists()


def test_released_adapter_source_and_subfolder():
    entry = {"source": "released", "released": {"qwen": {"repo": "maius/qwen-2.5-7b-it-personas", "subfolder": "sarcasm", "revision": "abc123"}}}
    assert adapter_source_label(entry, "qwen") == "released:maius/qwen-2.5-7b-it-personas/sarcasm@abc123"
    flat = {"source": "released", "released": {"qwen": {"repo": "maius/qwen-2.5-7b-it-misalignment"}}}
    assert adapter_source_label(flat, "qwen") == "released:maius/qwen-2.5-7b-it-misalignment@main"


def test_adapter_dir_is_found_at_the_root_or_in_the_subfolder(tmp_path):
    (tmp_path / "sarcasm").mkdir()
    (tmp_path / "sarcasm" / "adapter_config.json").write_text("{}")
    assert resolve_adapter_dir(tmp_path, "sarcasm") == tmp_path / "sarcasm"
    (tmp_path / "adapter_config.json").write_text("{}")
    assert resolve_adapter_dir(tmp_path, "sarcasm") == tmp_path
    with pytest.raises(InputError, match=r"no adapter_config\.json"):
        resolve_adapter_dir(tmp_path / "sarcasm" / "nothing", None)


def test_rule_script_folds_a_released_adapter_from_its_subfolder(micro_model_dir, persona_adapter_dir, tmp_path):
    import shutil
    from types import SimpleNamespace

    from workflow_scripts.rules import fold_persona as script

    released = tmp_path / "released_adapter"
    shutil.copytree(persona_adapter_dir, released / "sarcasm")
    smk = SimpleNamespace(
        input=SimpleNamespace(model=str(micro_model_dir), adapter=str(released)),
        output=SimpleNamespace(model=str(tmp_path / "model")),
        params=SimpleNamespace(persona={"source": "released", "released": {
            "qwen": {"repo": "maius/qwen-2.5-7b-it-personas", "subfolder": "sarcasm", "revision": "r1"}}}),
        wildcards=SimpleNamespace(model="qwen", persona="sarcasm"),
        log=[str(tmp_path / "fold.log")],
        threads=1,
        resources=SimpleNamespace(gpu=1),
    )
    script.main(smk)
    [adapter] = read_composition(tmp_path / "model").adapters
    assert adapter.source == "released:maius/qwen-2.5-7b-it-personas/sarcasm@r1"
    assert adapter.weights_sha256 == weights_hash(persona_adapter_dir)
    assert "logit divergence from base" in (tmp_path / "fold.log").read_text()
