"""LoRA training sharded over the GPUs of one node with FSDP (through accelerate, as the
transformers Trainer drives it): the trainer arguments, the split of the global batch,
and the adapter gathered from the shards into the usual PEFT files.

The recipe does not change with the number of GPUs: the global batch (per-device batch x
accumulation x processes) is the configured one, so accumulation is divided by the
number of processes. FSDP2 (`fully_shard`) shards every decoder layer; checkpoints are
sharded (each rank writes its part, a resumed run reads them back with the same number
of processes). Only rank 0 reads the model's weights; the others receive their
shards from it (a 32B model is in host memory once, not once per GPU). The final
adapter holds only the LoRA tensors: each is gathered from its
shards (`DTensor.full_tensor`) on every rank, and rank 0 writes them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from workflow_scripts.core.launch import rank, world_size


def accumulation_for(per_device_batch: int, grad_accum: int, processes: int) -> int:
    """Accumulation steps that keep per_device_batch x grad_accum as the global batch over
    `processes` data-parallel processes."""
    if processes <= 1:
        return grad_accum
    if grad_accum % processes:
        raise ValueError(
            f"global batch {per_device_batch} x {grad_accum}: the accumulation steps ({grad_accum}) "
            f"do not split over {processes} GPUs; set grad_accum to a multiple of {processes} "
            "(or the model's gpus to a divisor of it)"
        )
    return grad_accum // processes


def fsdp_arguments(processes: int) -> dict[str, Any]:
    """TrainingArguments that shard the model over `processes` (none for one process)."""
    if processes <= 1:
        return {}
    return {
        "fsdp": True,
        "fsdp_config": {
            "version": 2,
            # every decoder layer its own shard unit (the model's _no_split_modules)
            "auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "reshard_after_forward": True,
            "state_dict_type": "SHARDED_STATE_DICT",
            # rank 0 alone reads the weights (load_on_rank_zero)
            "cpu_ram_efficient_loading": True,
        },
    }


def load_on_rank_zero() -> None:
    """Before `from_pretrained` in a sharded run: only rank 0 reads the weights, the
    others build the model on the meta device (transformers does so when these are set
    and the process group is up)."""
    if world_size() <= 1:
        return
    import os

    from accelerate import PartialState

    PartialState()  # the process group, before the model is read
    os.environ["ACCELERATE_USE_FSDP"] = "true"
    os.environ["FSDP_CPU_RAM_EFFICIENT_LOADING"] = "true"


def is_main_process() -> bool:
    return rank() == 0


def barrier() -> None:
    """Every rank waits here until all have arrived (nothing to do unsharded)."""
    if world_size() <= 1:
        return
    import torch.distributed as dist
    from accelerate import PartialState

    PartialState()  # the process group, if nothing has started it yet
    if not dist.is_initialized():
        raise RuntimeError("sharded run without a process group: started outside torchrun?")
    dist.barrier()


def _full(tensor: Any) -> Any:
    full = getattr(tensor, "full_tensor", None)
    return (full() if full else tensor).detach().cpu()


def gathered_adapter_state(model: Any) -> dict[str, Any] | None:
    """The LoRA tensors of a sharded PEFT model, whole, on rank 0 (None elsewhere, and
    None unsharded: the model saves itself). Every rank must call this: each tensor is
    gathered from all of them."""
    if world_size() <= 1:
        return None
    # PeftModel.save_pretrained(state_dict=...) keeps the adapter's keys of this dict
    state = {name: _full(p) for name, p in model.named_parameters() if "lora_" in name}
    return state if is_main_process() else None


@contextlib.contextmanager
def rank_zero_output(final: Any) -> Iterator[Any]:
    """atomic_dir(final) on rank 0; a scratch directory, discarded, on the other ranks
    (they run the same code, rank 0 alone writes the output)."""
    import tempfile
    from pathlib import Path

    from workflow_scripts.core.io_utils import atomic_dir

    if is_main_process():
        with atomic_dir(final) as tmp:
            yield tmp
        return
    with tempfile.TemporaryDirectory(prefix=f"rank{rank()}-") as scratch:
        yield Path(scratch)
