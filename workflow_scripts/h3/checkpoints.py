"""The analysis checkpoints of one EM run, and the ones H3 evaluates."""

from __future__ import annotations

from pathlib import Path

from workflow_scripts.em.checkpoint_names import step_of


def checkpoint_dirs(analysis_dir: Path) -> list[tuple[int, Path]]:
    """(step, directory) of the analysis checkpoints of one run, by step."""
    found = sorted((step_of(p), p) for p in Path(analysis_dir).glob("step-*") if p.is_dir())
    return found


def select_checkpoints(found: list[tuple[int, Path]], stride: int) -> list[tuple[int, Path]]:
    """Every `stride`-th checkpoint (1: all), always with the final one."""
    if stride < 1:
        raise ValueError(f"h3.checkpoint_stride: expected >= 1, found {stride}")
    chosen = found[::stride]
    if found and found[-1] not in chosen:
        chosen.append(found[-1])
    return chosen
