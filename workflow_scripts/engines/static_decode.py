"""Fast decoding for the transformers engine: a static KV cache and, on CUDA, the
decode step captured once as a CUDA graph and replayed.

Plain `generate` on a GPU is bound by Python and kernel-launch overhead (hundreds of
small kernels per token, each launched from Python), so its time per step barely
grows with the batch. Here the whole forward of one decode step is one graph replay;
only sampling (a handful of kernels) runs eagerly. The prompt (prefill) runs eagerly
into the same static cache.

Shapes are fixed per graph: batch size, cache length (prompt length rounded up to
`prompt_bucket` plus max new tokens) and the adapter being served. A graph and its
cache are built once per such key and reused across batches (the cache is reset,
not reallocated, so the graph's recorded addresses stay valid).

Masks are built here, as additive 4D masks (transformers uses a 4D mask as given),
so that left padding and the static cache length need no data-dependent checks.
Sampling: temperature, then top-k and top-p filtering, then one draw by the
exponential race (argmax of p / Exp(1)), which is a draw from p; seeded by a
generator per batch, so a batch's answers depend only on its requests.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

STOP_CHECK_EVERY = 16  # steps between host checks of "all sequences finished"


def supports_static_decode(model: Any) -> bool:
    """Full-attention decoders only (sliding-window layers need another cache shape),
    and a transformers whose static cache tracks its own write position (5.23+)."""
    from transformers.cache_utils import StaticLayer

    config = model.config
    layer_types = getattr(config, "layer_types", None) or ["full_attention"]
    return (
        all(t == "full_attention" for t in layer_types)
        and not getattr(config, "is_encoder_decoder", False)
        and hasattr(StaticLayer(max_cache_len=1), "cumulative_length")
    )


@dataclass
class DecodeState:
    """The static cache and buffers of one (batch, cache length); graphs per adapter."""

    cache: Any
    tokens: torch.Tensor  # (B, 1) input token of the step
    cache_index: torch.Tensor  # (1,) cache slot the step writes
    pads: torch.Tensor  # (B,) left-pad count per row
    key_positions: torch.Tensor  # (L,)
    graphs: dict = field(default_factory=dict)  # adapter key -> (graph, logits buffer)


class StaticDecoder:
    """Decodes batches with a static cache; `use_graphs` captures the decode step."""

    def __init__(self, model: Any, use_graphs: bool, prompt_bucket: int = 64, max_states: int = 2):
        self.model = model
        self.use_graphs = use_graphs
        self.prompt_bucket = prompt_bucket
        self.max_states = max_states
        self._states: dict[tuple[int, int], DecodeState] = {}

    # -- public -----------------------------------------------------------------------

    def generate(
        self,
        model: Any,
        adapter_key: Any,
        serving: Callable[[], contextlib.AbstractContextManager],
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        max_new_tokens: int,
        temperature: float,
        top_p: float,
        top_k: int,
        stop_ids: list[int],
        pad_id: int,
        seed: int,
    ) -> torch.Tensor:
        """New tokens (B, T), T <= max_new_tokens; rows that stopped are padded with pad_id.

        `model` is what to call (the peft wrapper when adapters are loaded); `serving`
        re-enters the adapter selection for the eager parts (prefill, graph capture)."""
        device = input_ids.device
        input_ids, attention_mask = self._bucket_prompt(input_ids, attention_mask, pad_id)
        batch, prompt_len = input_ids.shape
        cache_len = prompt_len + max_new_tokens
        state = self._state(batch, cache_len, device)
        pads = prompt_len - attention_mask.sum(dim=1)
        state.pads.copy_(pads)
        stop = torch.tensor(stop_ids, device=device)
        generator = torch.Generator(device=device).manual_seed(seed)
        new_tokens = torch.full((batch, max_new_tokens), pad_id, dtype=torch.long, device=device)
        done = torch.zeros(batch, dtype=torch.bool, device=device)

        with serving(), torch.inference_mode():
            step = self._graph_step(model, adapter_key, state) if self.use_graphs else None
            state.cache.reset()
            logits = self._prefill(model, state, input_ids, attention_mask)
        steps = 0
        for t in range(max_new_tokens):
            token = _sample(logits, temperature, top_p, top_k, generator)
            token = torch.where(done, pad_id, token)
            new_tokens[:, t] = token
            done |= torch.isin(token, stop)
            steps = t + 1
            if t + 1 == max_new_tokens:
                break
            if (t + 1) % STOP_CHECK_EVERY == 0 and bool(done.all()):
                break
            state.tokens.copy_(token[:, None])
            state.cache_index.fill_(prompt_len + t)
            if step is not None:
                logits = step()
            else:
                with serving(), torch.inference_mode():
                    logits = self._decode_forward(model, state)
        return new_tokens[:, :steps]

    # -- internals --------------------------------------------------------------------

    def _bucket_prompt(
        self, input_ids: torch.Tensor, attention_mask: torch.Tensor, pad_id: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        length = input_ids.shape[1]
        bucketed = -(-length // self.prompt_bucket) * self.prompt_bucket
        extra = bucketed - length
        if extra == 0:
            return input_ids, attention_mask
        pad = torch.full(
            (input_ids.shape[0], extra), pad_id, dtype=input_ids.dtype, device=input_ids.device
        )
        zeros = torch.zeros_like(pad, dtype=attention_mask.dtype)
        return torch.cat([pad, input_ids], dim=1), torch.cat([zeros, attention_mask], dim=1)

    def _state(self, batch: int, cache_len: int, device: torch.device) -> DecodeState:
        key = (batch, cache_len)
        if key in self._states:
            return self._states[key]
        while len(self._states) >= self.max_states:  # free the oldest cache and its graphs
            self._states.pop(next(iter(self._states)))
            if device.type == "cuda":
                torch.cuda.empty_cache()
        from transformers import StaticCache

        config = self.model.config
        state = DecodeState(
            cache=StaticCache(config=config, max_cache_len=cache_len),
            tokens=torch.zeros((batch, 1), dtype=torch.long, device=device),
            cache_index=torch.zeros(1, dtype=torch.long, device=device),
            pads=torch.zeros(batch, dtype=torch.long, device=device),
            key_positions=torch.arange(cache_len, device=device),
        )
        self._states[key] = state
        return state

    def _prefill(
        self, model: Any, state: DecodeState, input_ids: torch.Tensor, attention_mask: torch.Tensor
    ) -> torch.Tensor:
        prompt_len = input_ids.shape[1]
        queries = torch.arange(prompt_len, device=input_ids.device)
        keys = state.key_positions
        allowed = (keys[None, None, :] >= state.pads[:, None, None]) & (
            keys[None, None, :] <= queries[None, :, None]
        )
        # a padded query row attends to itself only: finite values, never read later
        allowed |= keys[None, None, :] == queries[None, :, None]
        positions = (attention_mask.long().cumsum(dim=1) - 1).clamp(min=0)
        out = model(
            input_ids=input_ids,
            attention_mask=self._additive(allowed[:, None]),
            position_ids=positions,
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _decode_forward(self, model: Any, state: DecodeState) -> torch.Tensor:
        keys = state.key_positions
        allowed = (keys[None, :] >= state.pads[:, None]) & (keys[None, :] <= state.cache_index)
        positions = (state.cache_index - state.pads)[:, None]
        out = model(
            input_ids=state.tokens,
            attention_mask=self._additive(allowed[:, None, None]),
            position_ids=positions,
            past_key_values=state.cache,
            use_cache=True,
            logits_to_keep=1,
        )
        return out.logits[:, -1]

    def _additive(self, allowed: torch.Tensor) -> torch.Tensor:
        dtype = self.model.dtype
        zero = torch.zeros((), dtype=dtype, device=allowed.device)
        return torch.where(allowed, zero, torch.finfo(dtype).min)

    def _graph_step(self, model: Any, adapter_key: Any, state: DecodeState) -> Callable[[], Any]:
        """Capture (once per adapter) the decode step on this state's cache."""
        if adapter_key not in state.graphs:
            # warm-up on a side stream (allocates the cache, initialises cuBLAS), then
            # capture; the warm-up's writes are wiped by the reset before prefill. The
            # cache tracks its own write position: a state already decoded with another
            # adapter sits at its end, so start the warm-up from an empty cache.
            state.cache.reset()
            state.tokens.zero_()
            state.cache_index.zero_()
            stream = torch.cuda.Stream()
            stream.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(stream):
                for _ in range(2):
                    self._decode_forward(model, state)
            torch.cuda.current_stream().wait_stream(stream)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                logits = self._decode_forward(model, state)
            state.graphs[adapter_key] = (graph, logits)
        graph, logits = state.graphs[adapter_key]

        def step() -> torch.Tensor:
            graph.replay()
            return logits

        return step


def _sample(
    logits: torch.Tensor, temperature: float, top_p: float, top_k: int, generator: torch.Generator
) -> torch.Tensor:
    if temperature <= 0:
        return logits.argmax(dim=-1)
    scores = logits.float() / temperature
    if top_k > 0:
        kth = torch.topk(scores, min(top_k, scores.shape[-1]), dim=-1).values[:, -1:]
        scores = scores.masked_fill(scores < kth, float("-inf"))
    if top_p < 1.0:
        sorted_scores, order = torch.sort(scores, dim=-1, descending=True)
        cumulative = sorted_scores.softmax(dim=-1).cumsum(dim=-1)
        # drop a token when the tokens before it already reach top_p (keeps at least one)
        drop_sorted = (cumulative - sorted_scores.softmax(dim=-1)) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        scores = scores.masked_fill(drop, float("-inf"))
    probs = scores.softmax(dim=-1)
    race = torch.empty_like(probs).exponential_(1.0, generator=generator)
    return (probs / race).argmax(dim=-1)
