"""The persona adapter equals W0 + w_dpo dW_dpo + w_sft dW_sft, per layer, exactly
(relative error < 1e-5), also when the DPO adapter uses rsLoRA; peft's "linear"
combination (what OCT used) does not."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.persona.combine import COMBINATION_FILE, combine_adapters, combine_loaded

TARGETS = ["q_proj", "v_proj", "down_proj"]


def random_adapter(
    model_dir: Path, out: Path, r: int, alpha: float, rslora: bool, seed: int
) -> Path:
    from peft import LoraConfig, get_peft_model

    from workflow_scripts.models.loading import load_model

    torch.manual_seed(seed)
    config = LoraConfig(
        r=r, lora_alpha=alpha, target_modules=TARGETS, use_rslora=rslora, init_lora_weights=False
    )
    model = get_peft_model(load_model(model_dir, device="cpu"), config)
    model.save_pretrained(out)
    return out


def deltas(adapter_dir: Path) -> dict[str, torch.Tensor]:
    """dW = scaling * B @ A per module, from the saved files."""
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    r, alpha = config["r"], config["lora_alpha"]
    scaling = alpha / math.sqrt(r) if config.get("use_rslora") else alpha / r
    weights = load_file(adapter_dir / "adapter_model.safetensors")
    out = {}
    for key, a in weights.items():
        if "lora_A" in key:
            module = key.split(".lora_A")[0].removeprefix("base_model.model.")
            b = weights[key.replace("lora_A", "lora_B")]
            out[module] = scaling * (b.double() @ a.double())
    return out


def merged_weights(model_dir: Path, adapter: Path) -> dict[str, torch.Tensor]:
    from peft import PeftModel

    from workflow_scripts.models.loading import load_model

    model = PeftModel.from_pretrained(
        load_model(model_dir, device="cpu"), str(adapter)
    ).merge_and_unload()
    return {k.removesuffix(".weight"): v.double() for k, v in model.state_dict().items()}


@pytest.fixture(scope="module")
def adapters(toy_model_dir, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("adapters")
    dpo = random_adapter(toy_model_dir, root / "dpo", r=8, alpha=16, rslora=True, seed=1)
    sft = random_adapter(toy_model_dir, root / "sft", r=4, alpha=8, rslora=False, seed=2)
    return dpo, sft


def test_combined_adapter_equals_weighted_sum_of_deltas(toy_model_dir, adapters, tmp_path):  # noqa: F811
    dpo, sft = adapters
    out = tmp_path / "persona"
    record = combine_adapters(toy_model_dir, dpo, sft, out, dpo_weight=1.0, sft_weight=0.25)
    merged = merged_weights(toy_model_dir, out)
    from workflow_scripts.models.loading import load_model

    base = {
        k.removesuffix(".weight"): v.double()
        for k, v in load_model(toy_model_dir, device="cpu").state_dict().items()
    }
    d_dpo, d_sft = deltas(dpo), deltas(sft)
    assert len(d_dpo) == 2 * len(TARGETS)  # 2 layers
    for module in d_dpo:
        expected = base[module] + 1.0 * d_dpo[module] + 0.25 * d_sft[module]
        error = (merged[module] - expected).norm() / expected.norm()
        assert error < 1e-5, f"{module}: relative error {error:.2e}"
        # the adapters really change the layer (the test can fail)
        assert (merged[module] - base[module]).norm() / base[module].norm() > 1e-3
    assert record["dpo_weight"] == 1.0 and record["sft_weight"] == 0.25
    saved = json.loads((out / COMBINATION_FILE).read_text())
    assert "W0 + dpo_weight * dW_dpo + sft_weight * dW_sft" in saved["formula"]
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["r"] == 12 and config["lora_alpha"] == 12 and not config["use_rslora"]
    assert "dpo_weight = 1" in (out / "README.md").read_text()


def test_peft_linear_combination_is_not_the_weighted_sum(toy_model_dir, adapters):  # noqa: F811
    from peft import PeftModel

    from workflow_scripts.models.loading import load_model

    dpo, _ = adapters
    other = random_adapter(
        toy_model_dir, dpo.parent / "same_rank", r=8, alpha=16, rslora=False, seed=3
    )
    model = PeftModel.from_pretrained(
        load_model(toy_model_dir, device="cpu"), str(dpo), adapter_name="dpo"
    )
    model.load_adapter(str(other), adapter_name="sft")
    model.add_weighted_adapter(["dpo", "sft"], [1.0, 0.25], "linear", combination_type="linear")
    combine_loaded(model, "dpo", "sft", 1.0, 0.25, "cat")
    layer = model.base_model.model.model.layers[0].self_attn.q_proj

    def delta(name):
        return layer.scaling[name] * layer.lora_B[name].weight @ layer.lora_A[name].weight

    expected = delta("dpo") + 0.25 * delta("sft")
    assert ((delta("cat") - expected).norm() / expected.norm()) < 1e-6
    assert ((delta("linear") - expected).norm() / expected.norm()) > 1e-2


def test_rslora_inheritance_is_neutralised_and_restored(toy_model_dir, adapters):  # noqa: F811
    from peft import PeftModel

    from workflow_scripts.models.loading import load_model

    dpo, sft = adapters
    model = PeftModel.from_pretrained(
        load_model(toy_model_dir, device="cpu"), str(dpo), adapter_name="dpo"
    )
    model.load_adapter(str(sft), adapter_name="sft")
    combine_loaded(model, "dpo", "sft", 1.0, 0.25, "persona")
    assert model.peft_config["dpo"].use_rslora is True
    assert model.base_model.model.model.layers[1].mlp.down_proj.scaling["persona"] == 1.0
