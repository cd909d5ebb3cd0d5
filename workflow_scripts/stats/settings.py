"""Settings of the statistics stage, read from the `statistics:` block of the config.

Cheap to import (no polars, no numpy): rules/common.smk builds these at parse time to
check the hypotheses and to hand the rules one dictionary. The defaults are those of
config/schema.yaml, read from it (never repeated here).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from workflow_scripts.core.defaults import schema_defaults as _schema_defaults

DIRECTIONS = {"lower": "less", "higher": "greater"}  # hypothesis direction -> scipy alternative


@dataclass(frozen=True)
class Hypothesis:
    name: str
    personas: tuple[str, ...]
    direction: str  # "lower" | "higher": persona vs reference

    @property
    def alternative(self) -> str:
        return DIRECTIONS[self.direction]


MEASURES = ("misaligned_share", "mean_alignment")  # the protection estimands


@dataclass(frozen=True)
class StatsSettings:
    """Every field is read from the config (defaults: config/schema.yaml, the only
    defaults); see `settings_from_config`."""

    reference_persona: str
    bootstrap_resamples: int
    seed: int
    alpha: float
    misaligned_below: float
    coherent_above: float
    coherence_filter: float | None
    fdr_personas: tuple[str, ...] | None  # None: every persona except the reference
    fdr_datasets: tuple[str, ...] | None  # None: every dataset of role em
    hypotheses: tuple[Hypothesis, ...]
    medical_pair: tuple[str, str] | None
    test: str  # cluster_t | cluster_wilcoxon | mann_whitney (level comparisons)
    bootstrap_interval: str  # expanded_percentile | percentile
    tail_thresholds: tuple[float, ...]
    tail_quantile: float
    key_personas: tuple[str, ...] | None  # None: reference + hypothesis personas
    primary: str  # the protection measure of the verdicts (MEASURES)
    single_seed_verdicts: bool
    prompt_variant: str
    pool_prompt_variants: bool
    power: float
    design_effect: float
    figure_dpi: int
    benign_datasets: tuple[str, ...] = ()  # datasets of role benign (from `datasets`)
    seeds: tuple[int, ...] = ()  # the configured EM seeds (design calculator)
    samples_per_question: int | None = None  # the configured n (design calculator)
    # display order (from the config's grid); values not listed sort after, by name
    model_order: tuple[str, ...] = ()
    persona_order: tuple[str, ...] = ()
    dataset_order: tuple[str, ...] = ()

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

    def role_of(self, dataset: str) -> str:
        """em or benign (a dataset no config lists, e.g. an import's, is em)."""
        return "benign" if dataset in self.benign_datasets else "em"

    def to_dict(self) -> dict:
        return asdict(self)


def _tuple(value: Any) -> tuple | None:
    return None if value is None else tuple(value)


def schema_defaults() -> dict:
    """The `statistics` defaults of config/schema.yaml."""
    return _schema_defaults("statistics")


def settings_from_config(
    statistics: dict,
    models: list[str] | tuple[str, ...] = (),
    personas: list[str] | tuple[str, ...] = (),
    datasets: list[str] | tuple[str, ...] = (),
    where: str = "config",
    roles: dict[str, str] | None = None,
    seeds: list[int] | tuple[int, ...] = (),
    samples_per_question: int | None = None,
) -> StatsSettings:
    """Build settings from the `statistics` block (keys it lacks take the schema's
    defaults); `roles`: dataset -> em | benign; `where` names the config file(s) in
    errors. A persona in two hypotheses is an error: each persona x dataset cell has
    one direction."""
    block = {**schema_defaults(), **{k: v for k, v in statistics.items() if v is not None or k in _NULLABLE}}
    hypotheses = []
    seen: dict[str, str] = {}
    for name, entry in (block.get("hypotheses") or {}).items():
        for persona in entry["personas"]:
            if persona in seen and seen[persona] != name:
                raise ValueError(
                    f"{where}: statistics.hypotheses.{name}.personas: persona '{persona}' is "
                    f"already in hypothesis {seen[persona]}; each persona may have one direction"
                )
            seen[persona] = name
        hypotheses.append(Hypothesis(name, tuple(entry["personas"]), entry["direction"]))
    medical = block["medical_pair"]
    if medical is not None and len(medical) != 2:
        raise ValueError(
            f"{where}: statistics.medical_pair: expected two dataset names [bad, good] or null, "
            f"found {list(medical)}"
        )
    family = block.get("fdr_family") or {}
    reference = block["reference_persona"]
    if personas and reference not in personas:
        raise ValueError(
            f"{where}: statistics.reference_persona: '{reference}' is not a persona in `personas`"
        )
    return StatsSettings(
        reference_persona=reference,
        bootstrap_resamples=int(block["bootstrap_resamples"]),
        seed=int(block["seed"]),
        alpha=float(block["alpha"]),
        misaligned_below=float(block["misaligned_below"]),
        coherent_above=float(block["coherent_above"]),
        coherence_filter=block["coherence_filter"],
        fdr_personas=_tuple(family.get("personas")),
        fdr_datasets=_tuple(family.get("datasets")),
        hypotheses=tuple(hypotheses),
        medical_pair=_tuple(medical),
        test=block["test"],
        bootstrap_interval=block["bootstrap_interval"],
        tail_thresholds=tuple(float(t) for t in block["tail_thresholds"]),
        tail_quantile=float(block["tail_quantile"]),
        key_personas=_tuple(block["key_personas"]),
        primary=block["primary"],
        single_seed_verdicts=bool(block["single_seed_verdicts"]),
        prompt_variant=block["prompt_variant"],
        pool_prompt_variants=bool(block["pool_prompt_variants"]),
        power=float(block["power"]),
        design_effect=float(block["design_effect"]),
        figure_dpi=int(block["figure_dpi"]),
        benign_datasets=tuple(d for d, role in (roles or {}).items() if role == "benign"),
        seeds=tuple(int(s) for s in seeds),
        samples_per_question=samples_per_question,
        model_order=tuple(models),
        persona_order=tuple(personas),
        dataset_order=tuple(datasets),
    )


_NULLABLE = {"coherence_filter", "medical_pair", "key_personas"}  # null is a value, not "unset"


def settings_from_dict(values: dict) -> StatsSettings:
    """Inverse of StatsSettings.to_dict (what a rule passes as a param)."""
    values = dict(values)
    values["hypotheses"] = tuple(
        Hypothesis(h["name"], tuple(h["personas"]), h["direction"]) for h in values["hypotheses"]
    )
    for key in ("fdr_personas", "fdr_datasets", "medical_pair", "key_personas"):
        values[key] = _tuple(values.get(key))
    for key in ("tail_thresholds", "model_order", "persona_order", "dataset_order", "benign_datasets", "seeds"):
        values[key] = tuple(values.get(key) or ())
    return StatsSettings(**values)
