"""EM SFT sharded over two processes (FSDP2 through accelerate, gloo on CPU) trains the
same LoRA weights as one process with the same global batch, saves them in the usual
PEFT files, and resumes from its sharded checkpoints."""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_em_support)
from __future__ import annotations

import shutil
import time
from pathlib import Path

import pytest

from tests.test_em_sft import FAST, small_dataset
from tests.test_em_support import micro_model_dir  # noqa: F401
from workflow_scripts.core.launch import run_on_gpus
from workflow_scripts.core.sharding import accumulation_for, fsdp_arguments
from workflow_scripts.em.sft import train_em_adapter
from workflow_scripts.em.training import TRAINING_RECORD, EmTrainSettings

# Four optimizer steps of a global batch of 4 rows: 2 x 2 accumulation in one process,
# 2 x 1 in each of two. lr 1e-3 moves the LoRA weights well beyond the tolerance.
SETTINGS = {**FAST, "per_device_batch": 2, "grad_accum": 2, "epochs": 2, "save_steps": 1,
            "analysis_checkpoints": {"every": 0, "log_spaced": 0}}  # every trainer checkpoint kept
# float32 on CPU; the two runs differ only in the order of the gradient sums (an
# all-reduce over two ranks versus accumulation in one), which Adam's normalisation
# magnifies where a gradient is near zero. Measured: at most 1e-5 apart. Allowed: 2e-5,
# 2% of one step's largest change (lr 1e-3) and 0.1% relative.
TOLERANCE = {"rtol": 1e-3, "atol": 2e-5}


def adapter(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(path / "adapter_model.safetensors")


def train(model_dir: Path, data: Path, out: Path, checkpoints: Path, processes: int, **changes) -> dict:
    analysis_dir = changes.pop("analysis_dir", None)
    kwargs = dict(
        model_dir=model_dir, dataset=data, out_dir=out, checkpoints_dir=checkpoints,
        settings=EmTrainSettings(**{**SETTINGS, **changes}), persona="baseline", dataset_name="risky_finance",
        has_persona_adapter=False, analysis_dir=analysis_dir,
    )  # fmt: skip
    return run_on_gpus(train_em_adapter, kwargs, processes, cpu=True)


def assert_same_weights(a: dict, b: dict) -> None:
    import torch

    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], **TOLERANCE, msg=key)


def test_accumulation_keeps_the_global_batch_over_the_processes():
    assert accumulation_for(2, 8, 1) == 8
    assert accumulation_for(2, 8, 2) == 4
    assert accumulation_for(2, 8, 4) == 2
    with pytest.raises(ValueError, match="accumulation steps \\(6\\) do not split over 4 GPUs"):
        accumulation_for(2, 6, 4)
    assert fsdp_arguments(1) == {}
    assert fsdp_arguments(2)["fsdp_config"]["version"] == 2


def test_two_sharded_processes_train_the_one_process_weights_and_resume(micro_model_dir, tmp_path):
    data = small_dataset(tmp_path, n=8)
    single = train(micro_model_dir, data, tmp_path / "one", tmp_path / "ck-one", 1)
    started = time.monotonic()
    sharded = train(micro_model_dir, data, tmp_path / "two", tmp_path / "ck-two", 2)
    print(f"two-process run: {time.monotonic() - started:.0f} s")

    assert single["global_steps"] == sharded["global_steps"] == 4
    assert sharded["processes"] == 2 and single["processes"] == 1
    start, end = adapter(tmp_path / "one"), adapter(tmp_path / "two")
    # the usual PEFT files, whole tensors (not shards), the same keys as one process writes
    assert (tmp_path / "two" / "adapter_config.json").exists()
    assert (tmp_path / "two" / TRAINING_RECORD).exists()
    assert_same_weights(start, end)
    losses = [h["loss"] for h in sharded["log_history"] if "loss" in h]
    assert losses == pytest.approx([h["loss"] for h in single["log_history"] if "loss" in h], rel=1e-4)
    # the weights moved: the comparison is not between two untrained adapters
    lora_b = next(k for k in end if "lora_B" in k)
    assert end[lora_b].abs().max() > 100 * TOLERANCE["atol"]

    # as if killed after step 2: later checkpoints and the adapter gone; a rerun resumes
    ck = tmp_path / "ck-two"
    for later in ("checkpoint-3", "checkpoint-4"):
        shutil.rmtree(ck / later)
    resumed = train(micro_model_dir, data, tmp_path / "two-resumed", ck, 2)
    assert resumed["resumed_from"] == str(ck / "checkpoint-2")
    assert resumed["global_steps"] == 4
    assert_same_weights(end, adapter(tmp_path / "two-resumed"))


def test_a_sharded_run_writes_whole_analysis_checkpoints_from_rank_zero(micro_model_dir, tmp_path):
    """Every rank gathers the LoRA tensors at an analysis step; rank 0 writes them whole."""
    import torch

    data = small_dataset(tmp_path, n=8)
    analysis = tmp_path / "analysis"
    record = train(micro_model_dir, data, tmp_path / "two", tmp_path / "ck", 2,
                   analysis_checkpoints={"every": 2, "log_spaced": 0}, analysis_dir=analysis)
    assert record["analysis_checkpoints"] == [2, 4]
    assert sorted(p.name for p in analysis.glob("step-*")) == ["step-2", "step-4"]
    assert not list((tmp_path / "ck").glob("checkpoint-*"))  # the resume checkpoint is deleted
    final, last = adapter(tmp_path / "two"), adapter(analysis / "step-4")
    assert final.keys() == last.keys() == adapter(analysis / "step-2").keys()
    for key in final:
        assert last[key].dtype == torch.bfloat16 and last[key].shape == final[key].shape  # whole, not a shard
        torch.testing.assert_close(final[key].to(torch.bfloat16), last[key])

