"""A model of several GPUs is sampled over all of them: vLLM with tensor parallelism
of the model's `gpus`, the transformers engine with its layers split across them
(argument plumbing; no GPU needed)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import pytest

from workflow_scripts.engines.factory import load_engine, vllm_parallel_options
from workflow_scripts.models.loading import GPU_MEMORY_SHARE, split_across_gpus


class Recorder:
    """Stands in for an engine class: records how it was constructed."""

    calls: ClassVar[list[tuple[str, dict]]] = []

    def __init__(self, model_dir: str, **options):
        Recorder.calls.append((model_dir, options))


@pytest.fixture
def engines(monkeypatch):
    from workflow_scripts.engines import transformers_engine, vllm_engine

    Recorder.calls = []
    monkeypatch.setattr(vllm_engine, "VllmEngine", Recorder)
    monkeypatch.setattr(transformers_engine, "TransformersEngine", Recorder)
    return Recorder.calls


def test_vllm_gets_tensor_parallelism_of_the_models_gpus(engines):
    load_engine("vllm", "m", gpus=4, max_lora_rank=32)
    load_engine("vllm", "m", max_lora_rank=32)
    assert engines == [
        ("m", {"max_lora_rank": 32, "tensor_parallel_size": 4}),
        ("m", {"max_lora_rank": 32}),  # one GPU: vLLM's own default, nothing recorded
    ]


def test_a_tensor_parallel_size_in_config_must_agree_with_the_model():
    assert vllm_parallel_options({"tensor_parallel_size": 2}, 2) == {"tensor_parallel_size": 2}
    with pytest.raises(ValueError, match="tensor_parallel_size: 4, but the model's gpus is 2"):
        vllm_parallel_options({"tensor_parallel_size": 4}, 2)


def test_transformers_engine_is_told_to_split_over_the_gpus(engines):
    load_engine("transformers", "m", gpus=2, max_batch_sequences=8)
    load_engine("transformers", "m", max_batch_sequences=8)
    assert engines == [("m", {"max_batch_sequences": 8, "gpus": 2}), ("m", {"max_batch_sequences": 8})]


def test_sampling_passes_the_jobs_gpus_to_the_engine(monkeypatch):
    from workflow_scripts.sampling import sample

    seen = []
    monkeypatch.setattr(sample, "load_engine", lambda kind, model_dir, **kw: seen.append((kind, kw)))
    sample._engine_for(Path("m"), {"engine": "vllm", "vllm": {"max_loras": 4}}, 2)
    sample._engine_for(Path("m"), {"engine": "transformers", "batch_size": 16}, 4)
    assert seen == [
        ("vllm", {"gpus": 2, "max_loras": 4}),
        ("transformers", {"gpus": 4, "max_batch_sequences": 16}),
    ]


def test_split_places_layers_on_the_gpus_only():
    gib = 2**30
    options = split_across_gpus(2, [64 * gib, 64 * gib])
    assert options["device_map"] == "auto"
    assert options["max_memory"] == {0: int(64 * gib * GPU_MEMORY_SHARE), 1: int(64 * gib * GPU_MEMORY_SHARE), "cpu": 0}
    with pytest.raises(ValueError, match="memory of 1 GPUs given for a split over 2"):
        split_across_gpus(2, [64 * gib])


def test_split_without_the_gpus_says_how_many_are_visible(tiny_model_dir):
    import torch

    if torch.cuda.device_count() >= 2:
        pytest.skip("this machine has the GPUs")
    from workflow_scripts.models.loading import load_model

    with pytest.raises(RuntimeError, match=r"split over 2 GPUs, but [01] are visible"):
        load_model(tiny_model_dir, gpus=2)



def test_persona_generation_engines_get_the_jobs_gpus(engines):
    from types import SimpleNamespace

    from workflow_scripts.core.launch import engine_on_job_gpus
    from workflow_scripts.persona.generation import load_persona_engine

    def job(gpus):
        return SimpleNamespace(params=SimpleNamespace(engine={"kind": "vllm"}), resources=SimpleNamespace(gpu=gpus))

    assert engine_on_job_gpus(job(1)) == {"kind": "vllm"}  # one GPU: the settings unchanged
    engine = engine_on_job_gpus(job(4))
    assert engine == {"kind": "vllm", "gpus": 4}
    settings = {"chunk_size": 8, "vllm_chunk_size": 64}
    load_persona_engine(engine, "m", settings)
    load_persona_engine({"kind": "transformers", "gpus": 2}, "m", settings)
    assert engines == [
        ("m", {"max_batch_sequences": 64, "tensor_parallel_size": 4}),
        ("m", {"max_batch_sequences": 8, "gpus": 2}),
    ]
