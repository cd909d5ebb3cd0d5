"""Sampling with the residual stream changed: steering (a scaled EM direction added at
one layer of a persona model without EM) and ablation (directions projected out of a
persona+EM model). Both go through the sampling library (`sample_persona`) on a
transformers engine whose decoder layers carry `ResidualHooks` (vLLM cannot hook
activations), one engine load per job and one condition after another.

Each condition is recorded in the answers' `sampling` JSON, under
`engine_options.h4`: {"kind": "steer", "scale", "layer", "direction"} or
{"kind": "ablate", "source", "layers", "direction"}; the judge keys on the answer
text alone, so its cache serves these answers like any other.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from workflow_scripts.core.io_utils import write_parquet_atomic
from workflow_scripts.core.schema import NO_EM, SAMPLE_SCHEMA
from workflow_scripts.h4.conditions import NO_ABLATION, h4_condition, resolve_layer  # noqa: F401
from workflow_scripts.h4.hooks import ResidualHooks, n_layers

log = logging.getLogger(__name__)

class HookedEngine:
    """A transformers engine with residual hooks on `layers`; `condition` says what
    the hooks do for the next `generate` calls (recorded in `options`)."""

    def __init__(self, engine: Any, layers: Iterable[int]):
        self.engine = engine
        self.name, self.version, self.loads = engine.name, engine.version, engine.loads
        self.hooks = ResidualHooks(engine.model, list(layers))
        self._adapters: set[str] = set()
        self._condition: dict = {}

    @property
    def options(self) -> dict:
        return {**getattr(self.engine, "options", {}), "h4": self._condition}

    def add_adapter(self, name: str, path: str) -> None:
        if name not in self._adapters:  # every condition serves the same EM adapter
            self.engine.add_adapter(name, path)
            self._adapters.add(name)

    def steer(self, layer: int, vector: np.ndarray, scale: float, record: dict) -> None:
        import torch

        self.hooks.clear()
        self.hooks.set_add(layer, torch.as_tensor(np.asarray(vector, dtype=np.float32) * scale))
        self._condition = {"kind": "steer", "scale": float(scale), "layer": int(layer), **record}

    def ablate(self, directions: dict[int, np.ndarray] | None, record: dict) -> None:
        import torch

        self.hooks.clear()
        for layer, vector in (directions or {}).items():
            self.hooks.set_projection(layer, torch.as_tensor(np.asarray(vector, dtype=np.float32)))
        self._condition = {"kind": "ablate", "layers": sorted(directions or {}), **record}

    def generate(self, requests: Any, skip_keys: set | None = None) -> Iterator[list]:
        return self.engine.generate(requests, skip_keys=skip_keys)

    def close(self) -> None:
        self.hooks.remove()


@dataclass(frozen=True)
class H4Sampling:
    """What the H4 jobs sample: `n` answers per question with the study's sampling
    settings otherwise (temperature, top_p, max_new_tokens, seed), on transformers."""

    sampling: dict  # engine, n, temperature, top_p, max_new_tokens, seed, batch_size
    dtype: str | None = None

    @classmethod
    def from_params(cls, params: dict) -> H4Sampling:
        """From the rules' params: temperature, top_p, max_new_tokens, seed, n,
        batch_size, dtype."""
        keys = ("temperature", "top_p", "max_new_tokens", "seed", "n", "batch_size")
        return cls({k: params[k] for k in keys} | {"engine": "transformers"}, params.get("dtype"))


def empty_samples() -> pl.DataFrame:
    return pl.DataFrame(schema=SAMPLE_SCHEMA)


def _sample_conditions(engine: HookedEngine, model_dir: Path, condition: Any, questions_file: Path,
                       out_file: Path, settings: H4Sampling, model_name: str, persona: str,
                       conditions: list[tuple[str, Any]]) -> pl.DataFrame:
    """One sample_persona pass per (label, set-up) condition, each into its own
    resumable part file; the parts are concatenated in condition order."""
    from workflow_scripts.sampling.sample import sample_persona

    parts_dir = out_file.parent / f".{out_file.name}.parts"
    tables = []
    for label, set_up in conditions:
        set_up()
        log.info("h4 condition %s: %s", label, json.dumps(engine.options["h4"], sort_keys=True))
        tables.append(sample_persona(model_dir, [condition], questions_file, parts_dir / f"{label}.parquet",
                                     settings.sampling, model_name, persona, engine=engine))
    table = pl.concat(tables) if tables else empty_samples()
    write_parquet_atomic(table, out_file)
    shutil.rmtree(parts_dir, ignore_errors=True)
    return table


def _engine(model_dir: Path, settings: H4Sampling, layers: Iterable[int]) -> HookedEngine:
    from workflow_scripts.engines.factory import load_engine

    base = load_engine("transformers", str(model_dir), dtype=settings.dtype,
                       max_batch_sequences=settings.sampling["batch_size"])
    return HookedEngine(base, layers)


def steer_persona(model_dir: Path, direction: np.ndarray | None, direction_name: str, layer: int | None,
                  scales: list[float], questions_file: Path, out_file: Path, settings: H4Sampling,
                  model_name: str, persona: str) -> pl.DataFrame:
    """Answers of a persona model without EM with `scale` x the direction's vector at
    `layer` added, for scale 0 (the same engine unsteered) and each configured scale.
    No direction (a skipped extraction): no answers, an empty table."""
    from workflow_scripts.sampling.sample import Condition

    if direction is None:
        log.info("no direction %s (too few misaligned answers): nothing to steer with", direction_name)
        write_parquet_atomic(empty_samples(), out_file)
        return empty_samples()
    chosen = resolve_layer(layer, direction.shape[0])
    engine = _engine(model_dir, settings, [chosen])
    if direction.shape[0] != n_layers(engine.engine.model):
        raise ValueError(f"{direction_name}: {direction.shape[0]} layers; {model_dir} has {n_layers(engine.engine.model)}")
    record = {"direction": direction_name}
    conditions = [
        (f"scale_{scale:g}", lambda s=scale: engine.steer(chosen, direction[chosen], s, record))
        for scale in sorted({0.0, *map(float, scales)})
    ]
    try:
        return _sample_conditions(engine, model_dir, Condition(NO_EM, 0, None), questions_file, out_file,
                                  settings, model_name, persona, conditions)
    finally:
        engine.close()


def ablation_layers(layers: list[int] | None, n: int) -> list[int]:
    """Config `h4.ablation_layers`: the layers each direction is projected out of
    (null: every layer), each with that layer's own vector."""
    chosen = list(range(n)) if layers is None else [int(x) for x in layers]
    bad = [x for x in chosen if not 0 <= x < n]
    if bad:
        raise ValueError(f"h4.ablation_layers: {bad}; the model has layers 0..{n - 1}")
    return chosen


def ablate_persona(model_dir: Path, adapter_dir: Path, dataset: str, seed: int,
                   directions: dict[str, np.ndarray | None], layers: list[int] | None, questions_file: Path,
                   out_file: Path, settings: H4Sampling, model_name: str, persona: str) -> pl.DataFrame:
    """Answers of persona+EM unablated (source "none") and with each available source
    persona's direction projected out. No direction available: an empty table."""
    from workflow_scripts.sampling.sample import Condition

    available = {source: vector for source, vector in directions.items() if vector is not None}
    if not available:
        log.info("no direction to ablate (every source was skipped): nothing sampled")
        write_parquet_atomic(empty_samples(), out_file)
        return empty_samples()
    some = next(iter(available.values()))
    chosen = ablation_layers(layers, some.shape[0])
    engine = _engine(model_dir, settings, chosen)
    if some.shape[0] != n_layers(engine.engine.model):
        raise ValueError(f"directions have {some.shape[0]} layers; {model_dir} has {n_layers(engine.engine.model)}")
    conditions = [(NO_ABLATION, lambda: engine.ablate(None, {"source": NO_ABLATION}))]
    for source, vector in available.items():
        conditions.append((
            f"ablate_{source}",
            lambda v=vector, s=source: engine.ablate({i: v[i] for i in chosen},
                                                     {"source": s, "direction": f"{s}/{dataset}/s{seed}"}),
        ))
    condition = Condition(dataset, seed, str(adapter_dir))
    try:
        return _sample_conditions(engine, model_dir, condition, questions_file, out_file, settings,
                                  model_name, persona, conditions)
    finally:
        engine.close()
