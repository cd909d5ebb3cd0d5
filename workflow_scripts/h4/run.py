"""The sampling jobs of H4: steering persona models with a direction, and projecting
directions out of persona+EM models (workflow_scripts/h4/steering.py)."""

from __future__ import annotations

import logging
from pathlib import Path

from workflow_scripts.h4.store import read_direction

log = logging.getLogger(__name__)


def first_direction(vector_files: list[str], summary_files: list[str], names: list[str]) -> tuple[str, object]:
    """The first direction that is not skipped: (its name, vector), or (reasons, None)."""
    reasons = []
    for vector_file, summary_file, name in zip(vector_files, summary_files, names, strict=True):
        summary, vector = read_direction(Path(vector_file), Path(summary_file))
        if vector is not None:
            return name, vector
        reasons.append(f"{name}: {summary['reason']}")
    return "; ".join(reasons), None


def steer_from_files(model_dir: Path, vector_files: list[str], summary_files: list[str], steer: dict,
                     dataset: str, questions: Path, out: Path, sampling: dict, model_name: str, persona: str):
    """Rule h4_steer: steer persona `persona` (no EM) with the reference persona's
    direction of `dataset` (its first seed with a direction)."""
    from workflow_scripts.h4.steering import H4Sampling, steer_persona

    names = [f"{steer['reference']}/{dataset}/s{seed}" for seed in steer["seeds"]]
    name, vector = first_direction(vector_files, summary_files, names)
    return steer_persona(model_dir, vector, name, steer["layer"], steer["scales"], questions, out,
                         H4Sampling.from_params(sampling), model_name, persona)


def ablate_from_files(model_dir: Path, adapter_dir: Path, vector_files: list[str], summary_files: list[str],
                      ablate: dict, dataset: str, seed: int, questions: Path, out: Path, sampling: dict,
                      model_name: str, persona: str):
    """Rule h4_ablate: project each source persona's direction out of persona+EM."""
    from workflow_scripts.h4.steering import H4Sampling, ablate_persona

    directions = {}
    for source, vector_file, summary_file in zip(ablate["sources"], vector_files, summary_files, strict=True):
        summary, vector = read_direction(Path(vector_file), Path(summary_file))
        if vector is None:
            log.info("direction %s/%s/s%d skipped: %s", source, dataset, seed, summary["reason"])
        directions[source] = vector
    return ablate_persona(model_dir, adapter_dir, dataset, seed, directions, ablate["layers"], questions, out,
                          H4Sampling.from_params(sampling), model_name, persona)
