"""Names of the adapter-only analysis checkpoints of an EM run (`step-N`), apart from
the training code so that readers of the checkpoints import no training library."""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.core.io_utils import InputError


def step_dir_name(step: int) -> str:
    return f"step-{step}"


def step_of(directory: Path) -> int:
    """The training step of an analysis checkpoint directory `step-N`."""
    name = Path(directory).name
    prefix, _, number = name.partition("-")
    if prefix != "step" or not number.isdigit():
        raise InputError(f"{directory}: not an analysis checkpoint (expected a name step-N)")
    return int(number)
