"""The one place that turns an engine name into an engine: `transformers` (CPU and GPU)
or `vllm`. Each engine module is imported only when it is used, so a transformers run
never needs vLLM installed."""

from __future__ import annotations

from typing import Any

ENGINES = ("transformers", "vllm")


def load_engine(kind: str, model_dir: str, **options: Any) -> Any:
    """The engine of a run, loaded on `model_dir` with engine-specific `options`."""
    if kind == "transformers":
        from workflow_scripts.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model_dir, **options)
    if kind == "vllm":
        from workflow_scripts.engines.vllm_engine import VllmEngine

        return VllmEngine(model_dir, **options)
    raise ValueError(f"sampling.engine: unknown engine '{kind}'; expected one of {', '.join(ENGINES)}")
