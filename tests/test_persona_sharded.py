"""Persona DPO and SFT sharded over two processes (FSDP2, gloo on CPU) train the same
LoRA weights as one process with the same global batch."""

# ruff: noqa: F811  (pytest fixtures imported from tests.persona_toy)
from __future__ import annotations

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from tests.sharded_support import dpo_then_sft
from tests.test_em_sharded import TOLERANCE, adapter, assert_same_weights
from workflow_scripts.core.launch import run_on_gpus


def test_two_sharded_processes_train_the_one_process_persona_adapters(toy_model_dir, tmp_path):
    single = run_on_gpus(dpo_then_sft, {"model_dir": toy_model_dir, "out": tmp_path / "one"}, 1)
    sharded = run_on_gpus(
        dpo_then_sft, {"model_dir": toy_model_dir, "out": tmp_path / "two"}, 2, cpu=True
    )
    for stage in ("dpo", "sft"):
        assert single[stage]["steps"] == sharded[stage]["steps"] == 2
        one, two = adapter(tmp_path / "one" / stage), adapter(tmp_path / "two" / stage)
        assert_same_weights(one, two)
        lora_b = next(k for k in two if "lora_B" in k)
        assert two[lora_b].abs().max() > 10 * TOLERANCE["atol"]  # trained (B starts at 0)
    # the merge check ran on rank 0 and came back with the report
    assert sharded["sft"]["dpo_model_vs_base"]["kl_mean"] > 0
