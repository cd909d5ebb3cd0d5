"""Residual-stream hooks on the decoder layers of a transformers causal LM.

Each hooked layer's output (the residual stream after that layer) is changed in place
of the forward: first `x + add`, then the projection `x - (x . u) u` with u the unit
vector of the direction to remove (x - (x.d) d / |d|^2). Both act on every position.

The hooks hold their vectors in fixed buffers that are overwritten, never replaced,
so a decode step captured as a CUDA graph (engines/static_decode.py) reads the
current values on every replay. With zero buffers a hook returns its input
unchanged bit for bit (x + 0 and x - 0 * 0), so a model with idle hooks decodes as
one without them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import torch


def decoder_layers(model: Any) -> Any:
    """The decoder layers of a causal LM, also under a peft wrapper."""
    inner = model
    for _ in range(4):  # PeftModel -> LoraModel -> *ForCausalLM -> *Model
        layers = getattr(inner, "layers", None)
        if isinstance(layers, torch.nn.ModuleList):
            return layers
        inner = getattr(inner, "model", None) or getattr(inner, "base_model", None)
        if inner is None:
            break
    raise ValueError(f"{type(model).__name__}: no decoder layers found (expected model.model.layers)")


def n_layers(model: Any) -> int:
    return len(decoder_layers(model))


def _hidden(output: Any) -> torch.Tensor:
    return output[0] if isinstance(output, tuple) else output


def _replace(output: Any, hidden: torch.Tensor) -> Any:
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


class ResidualHooks:
    """Add and project-out hooks on chosen layers; `set_add`, `set_projection` and
    `clear` overwrite the buffers. Use as a context manager (hooks removed on exit)."""

    def __init__(self, model: Any, layers: Sequence[int]):
        modules = decoder_layers(model)
        param = next(model.parameters())
        hidden = model.config.hidden_size if hasattr(model, "config") else param.shape[-1]
        self.layers = sorted(set(int(i) for i in layers))
        for layer in self.layers:
            if not 0 <= layer < len(modules):
                raise ValueError(f"layer {layer}: the model has layers 0..{len(modules) - 1}")
        self._add = {i: torch.zeros(hidden, dtype=param.dtype, device=param.device) for i in self.layers}
        # the projection is computed in float32: in bfloat16 the removed component
        # would be left at the size of the rounding of x . u
        self._unit = {i: torch.zeros(hidden, dtype=torch.float32, device=param.device) for i in self.layers}
        self._handles = [modules[i].register_forward_hook(self._hook(i)) for i in self.layers]

    def _hook(self, layer: int):
        add, unit = self._add[layer], self._unit[layer]

        def hook(module: Any, args: Any, output: Any) -> Any:
            x = _hidden(output) + add
            coefficient = x.float() @ unit
            x = x - (coefficient.unsqueeze(-1) * unit).to(x.dtype)
            return _replace(output, x)

        return hook

    def set_add(self, layer: int, vector: torch.Tensor | None) -> None:
        """Add `vector` (already scaled) to layer `layer`'s output; None: nothing."""
        buffer = self._add[layer]
        buffer.zero_() if vector is None else buffer.copy_(torch.as_tensor(vector).to(buffer))

    def set_projection(self, layer: int, direction: torch.Tensor | None) -> None:
        """Remove the component along `direction` from layer `layer`'s output."""
        buffer = self._unit[layer]
        if direction is None:
            buffer.zero_()
            return
        d = torch.as_tensor(direction).to(buffer)
        norm = torch.linalg.vector_norm(d)
        buffer.zero_() if norm == 0 else buffer.copy_(d / norm)

    def clear(self) -> None:
        for layer in self.layers:
            self.set_add(layer, None)
            self.set_projection(layer, None)

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def __enter__(self) -> ResidualHooks:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.remove()


def project_out(x: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """x - (x . d) d / |d|^2 over the last axis (what a projection hook applies)."""
    d = direction.to(x.dtype)
    return x - (x @ d).unsqueeze(-1) * d / (d @ d)


@contextlib.contextmanager
def captured_answer_means(model: Any, answer_mask: torch.Tensor) -> Iterator[dict[int, torch.Tensor]]:
    """During one forward, each layer's output averaged over the positions where
    `answer_mask` (batch, seq) is 1, in float32: {layer: (batch, hidden)}. Only the
    means are kept, never the full activations."""
    modules = decoder_layers(model)
    means: dict[int, torch.Tensor] = {}
    mask = answer_mask.to(torch.float32).unsqueeze(-1)
    counts = mask.sum(dim=1).clamp(min=1.0)

    def hook_for(layer: int):
        def hook(module: Any, args: Any, output: Any) -> None:
            means[layer] = (_hidden(output).float() * mask).sum(dim=1) / counts

        return hook

    handles = [m.register_forward_hook(hook_for(i)) for i, m in enumerate(modules)]
    try:
        yield means
    finally:
        for handle in handles:
            handle.remove()
