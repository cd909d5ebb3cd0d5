"""The grid a config describes: models x personas x datasets x seeds, and the judged
conditions (each persona's no-EM control plus its EM datasets). The Snakefile and the
command-line estimates read the grid from here, so they cannot disagree."""

from __future__ import annotations

from dataclasses import dataclass

from workflow_scripts.core.schema import NO_EM


@dataclass(frozen=True)
class Grid:
    models: tuple[str, ...]
    personas: tuple[str, ...]
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    controls: bool

    @classmethod
    def from_config(cls, config: dict) -> Grid:
        return cls(
            models=tuple(m for m, entry in config["models"].items() if entry.get("grid", True)),
            personas=tuple(config["personas"]),
            datasets=tuple(config.get("datasets") or {}),
            seeds=tuple(int(s) for s in config["seeds"]),
            controls=bool(config.get("controls", True)),
        )

    def em_conditions(self) -> list[tuple[str, int]]:
        """(dataset, seed) pairs trained per model x persona."""
        return [(d, s) for d in self.datasets for s in self.seeds]

    def sampled_datasets(self) -> list[str]:
        """Datasets sampled and judged per model x persona: the no-EM control first."""
        return ([NO_EM] if self.controls else []) + list(self.datasets)

    def judged_cells(self) -> list[tuple[str, str, str]]:
        """(model, persona, dataset) of every judged file."""
        return [
            (m, p, d) for m in self.models for p in self.personas for d in self.sampled_datasets()
        ]
