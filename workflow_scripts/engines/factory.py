"""The one place that turns an engine name into an engine: `transformers` (CPU and GPU)
or `vllm`. Each engine module is imported only when it is used, so a transformers run
never needs vLLM installed."""

from __future__ import annotations

from typing import Any

ENGINES = ("transformers", "vllm")


def load_engine(kind: str, model_dir: str, gpus: int = 1, **options: Any) -> Any:
    """The engine of a run, loaded on `model_dir` with engine-specific `options`, over
    `gpus` GPUs of the job (the model's `gpus`): vLLM with tensor parallelism, the
    transformers engine with the layers split across them."""
    if kind == "transformers":
        from workflow_scripts.engines.transformers_engine import TransformersEngine

        return TransformersEngine(model_dir, **options, **({"gpus": gpus} if gpus > 1 else {}))
    if kind == "vllm":
        from workflow_scripts.engines.vllm_engine import VllmEngine

        return VllmEngine(model_dir, **vllm_parallel_options(options, gpus))
    raise ValueError(f"sampling.engine: unknown engine '{kind}'; expected one of {', '.join(ENGINES)}")


def vllm_parallel_options(options: dict[str, Any], gpus: int) -> dict[str, Any]:
    """vLLM's options for a model over `gpus` GPUs: tensor parallelism of that size (the
    EM adapters are served as LoRAs as on one GPU). A size written in `sampling.vllm`
    must agree with the model's `gpus`."""
    if gpus <= 1:
        return dict(options)
    given = options.get("tensor_parallel_size")
    if given is not None and int(given) != gpus:
        raise ValueError(
            f"sampling.vllm.tensor_parallel_size: {given}, but the model's gpus is {gpus}; "
            "remove it (the model's gpus sets it)"
        )
    return {**options, "tensor_parallel_size": gpus}
