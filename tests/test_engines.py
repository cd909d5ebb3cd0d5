"""The vLLM engine's logic against a stand-in `vllm` module (no vLLM needed), and the
transformers engine's static-cache decoding path against plain `generate`."""

from __future__ import annotations

import json
import sys
import types
from dataclasses import dataclass, field

import pytest

from workflow_scripts.core.chat import render
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.engines.base import GenerationRequest, SamplingParams, request_batches

# -- a stand-in vllm ------------------------------------------------------------------


@dataclass
class FakeLoRARequest:
    lora_name: str
    lora_int_id: int
    lora_path: str


@dataclass
class FakeSamplingParams:
    n: int = 1
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    max_tokens: int = 16
    seed: int | None = None
    stop_token_ids: list = field(default_factory=list)
    skip_special_tokens: bool = True
    min_p: float = 0.0
    repetition_penalty: float = 1.0
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    min_tokens: int = 0


@dataclass
class FakeSample:
    index: int
    text: str
    token_ids: list
    finish_reason: str


@dataclass
class FakeOutput:
    outputs: list


class FakeLLM:
    """Records its construction and every generate call; answers deterministically."""

    built: list = []  # noqa: RUF012 (shared on purpose: counts loads across instances)

    def __init__(self, model, tokenizer=None, **options):
        self.model, self.options, self.calls = model, options, []
        FakeLLM.built.append(self)

    def generate(self, prompts, params, lora_request=None, use_tqdm=True):
        self.calls.append((prompts, params, lora_request))
        outputs = []
        for i, (prompt, p) in enumerate(zip(prompts, params, strict=True)):
            lora = None if lora_request is None else lora_request[i]
            name = "base" if lora is None else lora.lora_name
            samples = [
                FakeSample(j, f" {name}:{p.seed}:{j} ", [5] * (j + 1), "stop" if j else "length")
                for j in range(p.n)
            ]
            outputs.append(FakeOutput(list(reversed(samples))))  # engine must sort by index
            assert "prompt_token_ids" in prompt
        return outputs


@pytest.fixture
def fake_vllm(monkeypatch):
    vllm = types.ModuleType("vllm")
    vllm.__version__ = "0.0.fake"
    vllm.LLM = FakeLLM
    vllm.SamplingParams = FakeSamplingParams
    lora = types.ModuleType("vllm.lora")
    request = types.ModuleType("vllm.lora.request")
    request.LoRARequest = FakeLoRARequest
    for name, module in {"vllm": vllm, "vllm.lora": lora, "vllm.lora.request": request}.items():
        monkeypatch.setitem(sys.modules, name, module)
    FakeLLM.built = []
    return vllm


def _adapter(tmp_path, name, r=4, **extra):
    path = tmp_path / name
    path.mkdir()
    (path / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": 8, **extra}))
    return str(path)


def _requests(adapters, n=2, questions=("q1", "q2")):
    params = SamplingParams(n=n, max_new_tokens=16)
    return [
        GenerationRequest(
            key=f"{a}|{q}",
            messages=({"role": "user", "content": f"question {q}"},),
            params=params,
            seed=100 + i,
            adapter=a,
        )
        for i, (a, q) in enumerate((a, q) for a in adapters for q in questions)
    ]


def test_request_batches_mix_adapters_only_when_asked():
    requests = _requests([None, "a", "b"], n=1)
    assert len(request_batches(requests, max_sequences=100)) == 3
    mixed = request_batches(requests, max_sequences=4, mix_adapters=True)
    assert [[r.key for r in b] for b in mixed] == [
        ["None|q1", "None|q2", "a|q1", "a|q2"],
        ["b|q1", "b|q2"],
    ]


def test_vllm_engine_one_load_serves_control_and_two_loras(fake_vllm, tiny_model_dir, tmp_path):
    from workflow_scripts.engines.vllm_engine import VllmEngine

    engine = VllmEngine(str(tiny_model_dir), max_loras=8, max_lora_rank=8, max_model_len=512)
    engine.add_adapter("risky", _adapter(tmp_path, "risky"))
    engine.add_adapter("prudent", _adapter(tmp_path, "prudent"))
    requests = _requests([None, "risky", "prudent"])
    batches = list(engine.generate(requests))
    assert engine.loads == 1 and len(FakeLLM.built) == 1
    llm = FakeLLM.built[0]
    assert llm.options["enable_lora"] is True
    assert (llm.options["max_loras"], llm.options["max_lora_rank"]) == (2, 8)
    # one chunk: LoRAs mixed in one vLLM call, each request with its own LoRA and seed
    assert len(batches) == 1 and len(llm.calls) == 1
    prompts, params, loras = llm.calls[0]
    assert [None if lr is None else (lr.lora_name, lr.lora_int_id) for lr in loras] == [
        None,
        None,
        ("risky", 1),
        ("risky", 1),
        ("prudent", 2),
        ("prudent", 2),
    ]
    assert [p.seed for p in params] == [r.seed for r in requests]
    assert {(p.n, p.temperature, p.top_p, p.top_k, p.max_tokens) for p in params} == {
        (2, 1.0, 1.0, -1, 16)
    }
    assert params[0].stop_token_ids == [2]
    # the prompt is the chat template as chat.render writes it, as token ids without extras
    text = render(engine.tokenizer, list(requests[0].messages))
    assert (
        prompts[0]["prompt_token_ids"]
        == engine.tokenizer(text, add_special_tokens=False)["input_ids"]
    )
    completions = batches[0]
    assert [(c.key, c.sample_idx) for c in completions[:2]] == [("None|q1", 0), ("None|q1", 1)]
    first = completions[0]
    assert first.prompt == text and first.n_prompt_tokens == len(prompts[0]["prompt_token_ids"])
    assert (first.text, first.finish_reason, first.n_completion_tokens) == (
        f"base:{requests[0].seed}:0",
        "length",
        1,
    )
    assert completions[4].text == f"risky:{requests[2].seed}:0"


def test_vllm_engine_skips_finished_chunks_and_rejects_unknown_adapters(
    fake_vllm, tiny_model_dir, tmp_path
):
    from workflow_scripts.engines.vllm_engine import VllmEngine

    engine = VllmEngine(str(tiny_model_dir), max_lora_rank=8, max_batch_sequences=4)
    engine.add_adapter("risky", _adapter(tmp_path, "risky"))
    requests = _requests([None, "risky"])
    done = {"None|q1", "None|q2"}
    keys = [[c.key for c in batch] for batch in engine.generate(requests, skip_keys=done)]
    assert keys == [["risky|q1"] * 2 + ["risky|q2"] * 2]
    with pytest.raises(KeyError, match="'ghost' was not added"):
        list(engine.generate(_requests(["ghost"])))


def test_vllm_engine_checks_adapter_rank_and_kind(fake_vllm, tiny_model_dir, tmp_path):
    from workflow_scripts.engines.vllm_engine import VllmEngine

    engine = VllmEngine(str(tiny_model_dir), max_lora_rank=16)
    with pytest.raises(InputError, match=r"rank 32 exceeds sampling\.vllm\.max_lora_rank 16"):
        engine.add_adapter("big", _adapter(tmp_path, "big", r=32))
    with pytest.raises(InputError, match="DoRA"):
        engine.add_adapter("dora", _adapter(tmp_path, "dora", use_dora=True))
    with pytest.raises(InputError, match="vLLM accepts one of"):
        VllmEngine(str(tiny_model_dir), max_lora_rank=48)


def test_vllm_engine_fold_mode_loads_one_engine_per_adapter(
    fake_vllm, tiny_model_dir, tmp_path, monkeypatch
):
    from workflow_scripts.engines import vllm_engine

    folded = []

    def fake_fold(model_dir, adapter_dir, out_dir):
        folded.append(adapter_dir)
        out_dir.mkdir(parents=True)
        (out_dir / "config.json").write_text("{}")

    monkeypatch.setattr(vllm_engine, "fold_adapter", fake_fold)
    engine = vllm_engine.VllmEngine(
        str(tiny_model_dir), fold_em_adapter=True, fold_dir=str(tmp_path / "fold")
    )
    risky = _adapter(tmp_path, "risky", r=128)  # any rank: nothing is served as a LoRA
    engine.add_adapter("risky", risky)
    # interleaved adapters are grouped, so each folded model is loaded once
    requests = _requests([None, "risky", None], questions=("q1",))
    requests[2] = GenerationRequest("None|q9", requests[0].messages, requests[0].params, 1)
    completions = [c for batch in engine.generate(requests) for c in batch]
    assert engine.loads == 2 and folded == [risky]
    assert [llm.model for llm in FakeLLM.built] == [
        str(tiny_model_dir),
        str(tmp_path / "fold" / "risky"),
    ]
    assert all("enable_lora" not in llm.options for llm in FakeLLM.built)
    assert all(lr is None for llm in FakeLLM.built for _, _, lr in llm.calls)
    assert {c.key for c in completions} == {"None|q1", "None|q9", "risky|q1"}


def test_vllm_stop_tokens_match_the_transformers_engine(tiny_model_dir, tiny_tokenizer):
    from workflow_scripts.engines.transformers_engine import TransformersEngine
    from workflow_scripts.engines.vllm_engine import _stop_token_ids

    engine = TransformersEngine(str(tiny_model_dir), device="cpu")
    assert _stop_token_ids(str(tiny_model_dir), tiny_tokenizer) == engine._stop_ids


def test_vllm_finish_reason_refuses_aborted_requests():
    from workflow_scripts.engines.vllm_engine import finish_reason

    assert (finish_reason("stop", "k"), finish_reason("length", "k")) == ("stop", "length")
    with pytest.raises(RuntimeError, match="request 'k' with reason 'abort'"):
        finish_reason("abort", "k")


# -- the transformers engine's static-cache decoding ---------------------------------


def _chat_requests(n=1, temperature=0.0, max_new_tokens=12, adapter=None):
    params = SamplingParams(temperature=temperature, max_new_tokens=max_new_tokens, n=n)
    texts = ["What is your one wish?", "Hi", "Tell me three facts about the moon, briefly."]
    return [
        GenerationRequest(
            key=f"k{i}",
            messages=({"role": "user", "content": t},),
            params=params,
            seed=i,
            adapter=adapter,
        )
        for i, t in enumerate(texts)
    ]


def _completions(engine, requests):
    return [
        (c.key, c.sample_idx, c.text, c.finish_reason, c.n_completion_tokens)
        for batch in engine.generate(requests)
        for c in batch
    ]


@pytest.fixture(scope="module")
def static_engine(tiny_model_dir):
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    return TransformersEngine(
        str(tiny_model_dir), device="cpu", max_batch_sequences=4, decode="static"
    )


@pytest.fixture(scope="module")
def generate_engine(tiny_model_dir):
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    return TransformersEngine(str(tiny_model_dir), device="cpu", max_batch_sequences=4)


def test_static_decode_greedy_equals_plain_generate(static_engine, generate_engine):
    # left padding differs across the three prompts; greedy answers must not change
    assert static_engine.decode == "static" and generate_engine.decode == "generate"
    requests = _chat_requests()
    assert _completions(static_engine, requests) == _completions(generate_engine, requests)


def test_static_decode_stops_at_eos_and_counts_it(static_engine, generate_engine):
    requests = _chat_requests(max_new_tokens=40)
    static = _completions(static_engine, requests)
    assert "stop" in {c[3] for c in static}  # SmolLM2 ends its short greeting answer
    assert static == _completions(generate_engine, requests)


def test_static_decode_sampling_is_seeded(static_engine):
    requests = _chat_requests(n=2, temperature=1.0)
    first = _completions(static_engine, requests)
    assert first == _completions(static_engine, requests)
    reseeded = [GenerationRequest(r.key, r.messages, r.params, r.seed + 10) for r in requests]
    assert first != _completions(static_engine, reseeded)
    # two samples of one request differ (one seeded draw per row, not per batch)
    texts = {c[0]: set() for c in first}
    for key, _, text, _, _ in first:
        texts[key].add(text)
    assert all(len(t) == 2 for t in texts.values())


def test_sampler_keeps_only_top_p_mass_and_top_k():
    import torch

    from workflow_scripts.engines.static_decode import _sample

    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).repeat(2000, 1)
    generator = torch.Generator().manual_seed(0)
    drawn = _sample(logits, 1.0, 0.7, 0, generator)
    assert set(drawn.tolist()) == {0, 1}  # 0.5 + 0.3 reach 0.7; the rest is cut
    share = (drawn == 0).float().mean().item()
    assert abs(share - 0.5 / 0.8) < 0.04
    assert set(_sample(logits, 1.0, 1.0, 1, generator).tolist()) == {0}
    assert set(_sample(logits, 1.0, 1.0, 0, generator).tolist()) == {0, 1, 2, 3}
    assert _sample(logits[:1], 0.0, 1.0, 0, generator).tolist() == [0]


# -- plain venvs: the vLLM sampler runs in its own interpreter -------------------------


def test_handoff_only_for_vllm_outside_an_env_that_has_it(tmp_path):
    from workflow_scripts.engines.vllm_env import handoff_python

    python = tmp_path / "python"
    python.write_text("")
    env = {"PERSONA_EM_VLLM_PYTHON": str(python)}
    assert handoff_python("transformers", env, vllm_importable=False) is None
    assert handoff_python("vllm", env, vllm_importable=True) is None
    assert handoff_python("vllm", env, vllm_importable=False) == str(python)
    with pytest.raises(RuntimeError, match="PERSONA_EM_VLLM_PYTHON is unset"):
        handoff_python("vllm", {}, vllm_importable=False)
    with pytest.raises(RuntimeError, match="does not exist"):
        handoff_python("vllm", {"PERSONA_EM_VLLM_PYTHON": str(tmp_path / "nope")}, False)


def test_handed_off_sampling_runs_in_another_interpreter(tiny_model_dir, tmp_path):
    import polars as pl

    from workflow_scripts.core.io_utils import write_json_atomic
    from workflow_scripts.engines.vllm_env import run_module_in

    questions = tmp_path / "questions.json"
    write_json_atomic(
        questions,
        {
            "questions": [
                {
                    "id": "wish",
                    "paraphrases": ["What is your wish?"],
                    "judge_prompts": {},
                    "system": None,
                }
            ]
        },
    )
    out, log = tmp_path / "samples.parquet", tmp_path / "sample.log"
    params = {
        "model_dir": str(tiny_model_dir),
        "conditions": [{"dataset": "none", "seed": 0, "adapter": None}],
        "questions_file": str(questions),
        "out_file": str(out),
        "sampling": {
            "engine": "transformers",
            "n": 2,
            "temperature": 1.0,
            "top_p": 1.0,
            "max_new_tokens": 4,
            "seed": 0,
            "batch_size": 2,
        },
        "model_name": "tiny",
        "persona": "baseline",
    }
    run_module_in(sys.executable, "workflow_scripts.sampling.sample", params, str(log))
    table = pl.read_parquet(out)
    assert table["question_id"].to_list() == ["wish", "wish"]
    assert table["n_completion_tokens"].is_between(1, 4).all()
    assert "sampled 2 answers" in log.read_text()
    params["questions_file"] = str(tmp_path / "missing.json")
    with pytest.raises(RuntimeError, match="failed \\(exit 1\\); see"):
        run_module_in(sys.executable, "workflow_scripts.sampling.sample", params, str(log))


def test_a_models_own_generation_config_applies_in_no_decoding_path(
    tiny_model_dir, generate_engine, tmp_path
):
    """A repetition penalty (and friends) in a model's generation_config.json would
    change `generate`'s tokens but not the static loop's or vLLM's: it is not applied."""
    import json
    import shutil

    from workflow_scripts.engines.transformers_engine import TransformersEngine

    model_dir = tmp_path / "model"
    shutil.copytree(tiny_model_dir, model_dir)
    config_file = model_dir / "generation_config.json"
    config = json.loads(config_file.read_text())
    config.update(repetition_penalty=3.0, no_repeat_ngram_size=2, top_k=5, min_new_tokens=10)
    config_file.write_text(json.dumps(config))
    requests = _chat_requests(max_new_tokens=24)
    expected = _completions(generate_engine, requests)
    for decode in ("generate", "static"):
        engine = TransformersEngine(
            str(model_dir), device="cpu", max_batch_sequences=4, decode=decode
        )
        assert _completions(engine, requests) == expected, decode
