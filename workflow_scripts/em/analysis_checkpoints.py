"""Adapter-only checkpoints of an EM run for the phase-transition analysis (H3).

At the steps of `em_training.analysis_checkpoints` (em/training.py, `analysis_steps`)
a trainer callback writes the LoRA tensors in bfloat16, with no optimizer state, as a
servable adapter directory (adapter_config.json, adapter_model.safetensors and the
composition.json of the model + this EM adapter). They are staged under the run's
checkpoints directory, which outlives a killed job (Snakemake deletes a failed job's
outputs), and moved into the rule's `analysis_checkpoints/step-N/` output when training
ends; the trainer's own resume checkpoint is then deleted.

Sharded runs: every rank gathers the tensors (a collective), rank 0 writes.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from workflow_scripts.core.composition import AdapterRef, Composition, write_composition
from workflow_scripts.core.hashing import weights_hash
from workflow_scripts.core.io_utils import InputError, atomic_dir, write_json_atomic
from workflow_scripts.core.sharding import gathered_adapter_state, is_main_process
from workflow_scripts.em.checkpoint_names import step_dir_name, step_of  # noqa: F401  (re-exported)
from workflow_scripts.em.training import analysis_steps

log = logging.getLogger(__name__)

STAGING = "analysis"  # under the run's checkpoints directory
PLAN_FILE = "plan.json"  # in the analysis_checkpoints output: the steps and how they were chosen


def adapter_state_bf16(model: Any) -> dict[str, Any] | None:
    """The LoRA tensors of a PEFT model in bfloat16, named as the model names them
    (what `save_pretrained(state_dict=...)` expects); None on ranks other than 0."""
    import torch

    gathered = gathered_adapter_state(model)  # sharded: every rank must call this
    if not is_main_process():
        return None
    state = gathered if gathered is not None else dict(model.named_parameters())
    return {
        name: tensor.detach().to(torch.bfloat16).cpu().contiguous()
        for name, tensor in state.items()
        if "lora_" in name
    }


def save_analysis_checkpoint(
    model: Any, directory: Path, start: Composition, dataset_name: str, seed: int, step: int
) -> None:
    """One servable bf16 adapter at `directory` (rank 0 writes; every rank calls)."""
    state = adapter_state_bf16(model)
    if state is None:
        return
    with atomic_dir(directory) as tmp:
        model.save_pretrained(tmp, state_dict=state)
        em_ref = AdapterRef(
            role="em",
            name=dataset_name,
            weights_sha256=weights_hash(tmp),
            weight=1.0,
            source=f"trained:{dataset_name}/s{seed}@{step_dir_name(step)}",
        )
        write_composition(tmp, start.with_adapter(em_ref))


def analysis_callback(
    staging: Path, plan: dict, start: Composition, dataset_name: str, seed: int
) -> Any:
    """A trainer callback writing the analysis checkpoints into `staging`; its `trainer`
    attribute must be set to the trainer it is added to (the model it saves)."""
    from transformers import TrainerCallback

    class SaveAnalysisCheckpoints(TrainerCallback):
        trainer: Any = None
        steps: tuple[int, ...] = ()

        def on_train_begin(self, args, state, control, **kwargs):
            self.steps = tuple(analysis_steps(plan, state.max_steps))
            log.info("analysis checkpoints at steps %s", self.steps)

        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step in self.steps:
                directory = Path(staging) / step_dir_name(state.global_step)
                save_analysis_checkpoint(
                    self.trainer.model, directory, start, dataset_name, seed, state.global_step
                )
                log.info("analysis checkpoint %s", directory)

    return SaveAnalysisCheckpoints()


def publish_analysis_checkpoints(
    staging: Path, out_dir: Path, steps: list[int], plan: dict, max_steps: int
) -> None:
    """Move the staged checkpoints of `steps` into `out_dir` (with plan.json); a step
    that was never written is an error, not a gap in the curve."""
    staging, out_dir = Path(staging), Path(out_dir)
    missing = [s for s in steps if not (staging / step_dir_name(s)).is_dir()]
    if missing:
        raise InputError(
            f"{staging}: analysis checkpoints of steps {missing} are missing "
            f"(planned: {steps})"
        )
    with atomic_dir(out_dir) as tmp:
        for step in steps:
            shutil.move(staging / step_dir_name(step), tmp / step_dir_name(step))
        write_json_atomic(
            tmp / PLAN_FILE,
            {"steps": steps, "max_steps": max_steps, "plan": plan, "dtype": "bfloat16"},
        )
    if staging.exists():
        shutil.rmtree(staging)


def delete_resume_checkpoints(checkpoints_dir: Path) -> list[str]:
    """Remove the trainer's checkpoint-N directories of a finished run (the run
    fingerprint stays); returns what was removed."""
    removed = []
    for directory in sorted(Path(checkpoints_dir).glob("checkpoint-*")):
        if directory.is_dir():
            shutil.rmtree(directory)
            removed.append(directory.name)
    return removed
