"""Settings of the statistics stage, read from the `statistics:` block of the config.

Cheap to import (no polars, no numpy): rules/common.smk builds these at parse time to
check the hypotheses and to hand the rules one dictionary.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

DIRECTIONS = {"lower": "less", "higher": "greater"}  # hypothesis direction -> scipy alternative


@dataclass(frozen=True)
class Hypothesis:
    name: str
    personas: tuple[str, ...]
    direction: str  # "lower" | "higher": persona vs reference

    @property
    def alternative(self) -> str:
        return DIRECTIONS[self.direction]


@dataclass(frozen=True)
class StatsSettings:
    reference_persona: str = "baseline"
    bootstrap_resamples: int = 10_000
    seed: int = 12345
    alpha: float = 0.05
    misaligned_below: float = 30.0
    coherent_above: float = 50.0
    coherence_filter: float | None = None
    fdr_personas: tuple[str, ...] | None = None  # None: every persona except the reference
    fdr_datasets: tuple[str, ...] | None = None  # None: every EM dataset
    hypotheses: tuple[Hypothesis, ...] = ()
    medical_pair: tuple[str, str] | None = ("bad_medical", "good_medical")
    test: str = "cluster_t"  # cluster_t | cluster_wilcoxon | mann_whitney
    bootstrap_interval: str = "expanded_percentile"  # or "percentile"
    tail_thresholds: tuple[float, ...] = (80.0, 50.0, 30.0)
    tail_quantile: float = 5.0
    key_personas: tuple[str, ...] | None = None  # None: reference + hypothesis personas
    # display order (from the config's grid); values not listed sort after, by name
    model_order: tuple[str, ...] = ()
    persona_order: tuple[str, ...] = ()
    dataset_order: tuple[str, ...] = ()
    figure_dpi: int = 300

    @property
    def level(self) -> float:
        return 1.0 - self.alpha

    def alternative_for(self, persona: str) -> str:
        """Direction-matched alternative of a persona vs the reference."""
        for hypothesis in self.hypotheses:
            if persona in hypothesis.personas:
                return hypothesis.alternative
        return "two-sided"

    def hypothesis_personas(self) -> list[str]:
        return [p for h in self.hypotheses for p in h.personas]

    def key_persona_list(self) -> list[str]:
        if self.key_personas is not None:
            return list(self.key_personas)
        keys = [self.reference_persona]
        for persona in self.hypothesis_personas():
            if persona not in keys:
                keys.append(persona)
        return keys

    def to_dict(self) -> dict:
        return asdict(self)


def _tuple(value: Any) -> tuple | None:
    return None if value is None else tuple(value)


def settings_from_config(
    statistics: dict,
    models: list[str] | tuple[str, ...] = (),
    personas: list[str] | tuple[str, ...] = (),
    datasets: list[str] | tuple[str, ...] = (),
    where: str = "config",
) -> StatsSettings:
    """Build settings from the (schema-validated) `statistics` block; `where` names the
    config file(s) in errors. A persona in two hypotheses is an error: each persona x
    dataset cell has one direction."""
    hypotheses = []
    seen: dict[str, str] = {}
    for name, entry in (statistics.get("hypotheses") or {}).items():
        for persona in entry["personas"]:
            if persona in seen and seen[persona] != name:
                raise ValueError(
                    f"{where}: statistics.hypotheses.{name}.personas: persona '{persona}' is "
                    f"already in hypothesis {seen[persona]}; each persona may have one direction"
                )
            seen[persona] = name
        hypotheses.append(Hypothesis(name, tuple(entry["personas"]), entry["direction"]))
    medical = statistics.get("medical_pair", ("bad_medical", "good_medical"))
    if medical is not None and len(medical) != 2:
        raise ValueError(
            f"{where}: statistics.medical_pair: expected two dataset names [bad, good] or null, "
            f"found {list(medical)}"
        )
    family = statistics.get("fdr_family") or {}
    reference = statistics.get("reference_persona", "baseline")
    if personas and reference not in personas:
        raise ValueError(
            f"{where}: statistics.reference_persona: '{reference}' is not a persona in `personas`"
        )
    return StatsSettings(
        reference_persona=reference,
        bootstrap_resamples=int(statistics.get("bootstrap_resamples", 10_000)),
        seed=int(statistics.get("seed", 12345)),
        alpha=float(statistics.get("alpha", 0.05)),
        misaligned_below=float(statistics.get("misaligned_below", 30)),
        coherent_above=float(statistics.get("coherent_above", 50)),
        coherence_filter=statistics.get("coherence_filter"),
        fdr_personas=_tuple(family.get("personas")),
        fdr_datasets=_tuple(family.get("datasets")),
        hypotheses=tuple(hypotheses),
        medical_pair=_tuple(medical),
        test=statistics.get("test", "cluster_t"),
        bootstrap_interval=statistics.get("bootstrap_interval", "expanded_percentile"),
        tail_thresholds=tuple(float(t) for t in statistics.get("tail_thresholds", (80, 50, 30))),
        tail_quantile=float(statistics.get("tail_quantile", 5)),
        key_personas=_tuple(statistics.get("key_personas")),
        model_order=tuple(models),
        persona_order=tuple(personas),
        dataset_order=tuple(datasets),
        figure_dpi=int(statistics.get("figure_dpi", 300)),
    )


def settings_from_dict(values: dict) -> StatsSettings:
    """Inverse of StatsSettings.to_dict (what a rule passes as a param)."""
    values = dict(values)
    values["hypotheses"] = tuple(
        Hypothesis(h["name"], tuple(h["personas"]), h["direction"]) for h in values["hypotheses"]
    )
    for key in ("fdr_personas", "fdr_datasets", "medical_pair", "key_personas"):
        values[key] = _tuple(values.get(key))
    for key in ("tail_thresholds", "model_order", "persona_order", "dataset_order"):
        values[key] = tuple(values.get(key) or ())
    return StatsSettings(**values)
