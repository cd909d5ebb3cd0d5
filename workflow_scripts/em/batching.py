"""How EM training batches rows of different lengths, without changing the loss.

Three batching modes (`em_training.batching`):

- `padded` (the reference): rows padded on the right to the longest row of their
  micro-batch, the padding mask passed to attention. Any mask makes sdpa leave its
  flash kernel for the memory-efficient one.
- `causal`: the same right-padded rows, no attention mask. Under causal attention a
  real token only sees the tokens before it, and with right padding those are all
  real, so every real token's output, loss and gradient is the padded mode's; the
  pads' own outputs carry no label. sdpa then runs its causal flash kernel.
- `packed`: the rows of a micro-batch concatenated into one row with no padding,
  position ids restarting at each row, attention kept inside each row by a
  variable-length flash kernel (`torch.nn.attention.varlen`). The first label of
  each row is ignored, as the label shift does in the padded modes.

In every mode the loss is the recipe's: completion tokens only, summed over the
micro-batches of one optimizer step and divided by the completion tokens of the
whole global batch (the trainer's `num_items_in_batch`), so how the global batch is
split into micro-batches does not change it.

`length_grouping` orders the rows so that micro-batches hold rows of similar length
(less padding in `padded` and `causal` mode): `batch` sorts the rows inside each
global batch of a seeded random order (the optimizer steps see the same rows as an
ungrouped order would), `dataset` forms the global batches themselves from rows of
similar length (least padding; each step then sees rows of one length range).
"""

from __future__ import annotations

import functools
import inspect
import itertools
import random
from collections.abc import Iterator, Sequence
from typing import Any

BATCHING_MODES = ("padded", "causal", "packed")
LENGTH_GROUPINGS = ("none", "batch", "dataset")

CAUSAL_SDPA = "em_causal_sdpa"
VARLEN = "em_varlen"
ATTENTION_OF_MODE = {"causal": CAUSAL_SDPA, "packed": VARLEN}

MEGABATCH = 50  # global batches sorted together by `dataset` grouping


def causal_sdpa_attention(module, query, key, value, attention_mask, **kwargs) -> tuple[Any, None]:
    """transformers' sdpa attention with the mask left out (causal flash kernel)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    return sdpa_attention_forward(module, query, key, value, None, **kwargs)


def _varlen_kernel() -> Any:
    """torch's variable-length flash attention, or None where torch has none."""
    try:
        from torch.nn.attention.varlen import varlen_attn
    except ImportError:
        return None
    return varlen_attn


@functools.cache
def _varlen_kwargs(kernel: Any, n_heads: int, n_kv_heads: int) -> tuple[dict, bool]:
    """Keyword arguments for a causal call of `kernel`, and whether the keys and values
    must be repeated to the query heads (torch versions before `enable_gqa`)."""
    params = inspect.signature(kernel).parameters
    kwargs = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    if n_heads == n_kv_heads:
        return kwargs, False
    if "enable_gqa" in params:
        return kwargs | {"enable_gqa": True}, False
    return kwargs, True


@functools.cache
def _takes_scale(kernel: Any) -> bool:
    return "scale" in inspect.signature(kernel).parameters


def varlen_attention(
    module, query, key, value, attention_mask, scaling=None, dropout=0.0, **kwargs
) -> tuple[Any, None]:
    """Causal attention inside each packed row: query/key/value (1, heads, tokens, dim),
    row boundaries in `cu_seq_lens_q`/`cu_seq_lens_k` (from trl's padding-free
    collator). On a GPU the flash varlen kernel; elsewhere one sdpa call per row (the
    same function, for tests on the CPU)."""
    import torch
    import torch.nn.functional as F

    cu_q, cu_k = kwargs.get("cu_seq_lens_q"), kwargs.get("cu_seq_lens_k")
    if cu_q is None or query.shape[0] != 1:
        raise ValueError(
            f"{VARLEN} attention needs packed rows (batch 1 with cu_seq_lens_q); found batch "
            f"{query.shape[0]}, cu_seq_lens_q {'missing' if cu_q is None else 'given'}"
        )
    cu_k = cu_q if cu_k is None else cu_k
    q, k, v = (t[0].transpose(0, 1).contiguous() for t in (query, key, value))  # (tokens, heads, dim)
    kernel = _varlen_kernel() if q.is_cuda else None
    if kernel is not None:
        call_kwargs, repeat = _varlen_kwargs(kernel, q.shape[1], k.shape[1])
        call_kwargs = dict(call_kwargs)
        if repeat:
            k = k.repeat_interleave(q.shape[1] // k.shape[1], dim=1)
            v = v.repeat_interleave(q.shape[1] // v.shape[1], dim=1)
        if scaling is not None and _takes_scale(kernel):
            call_kwargs["scale"] = scaling
        max_q = int(kwargs.get("max_length_q") or int((cu_q[1:] - cu_q[:-1]).max()))
        max_k = int(kwargs.get("max_length_k") or max_q)
        out = kernel(q, k, v, cu_q.to(torch.int32), cu_k.to(torch.int32), max_q, max_k, **call_kwargs)
        return out.unsqueeze(0), None
    bounds = cu_q.tolist()
    parts = []
    for start, end in itertools.pairwise(bounds):
        qs, ks, vs = (t[start:end].transpose(0, 1).unsqueeze(0) for t in (q, k, v))
        parts.append(
            F.scaled_dot_product_attention(
                qs, ks, vs, is_causal=True, scale=scaling, enable_gqa=qs.shape[1] != ks.shape[1]
            )[0].transpose(0, 1)
        )
    return torch.cat(parts, dim=0).unsqueeze(0), None


def register_attention() -> None:
    """Make the two attention functions known to transformers by name. They are not
    registered for mask building, so transformers builds no mask for them."""
    from transformers import AttentionInterface

    AttentionInterface.register(CAUSAL_SDPA, causal_sdpa_attention)
    AttentionInterface.register(VARLEN, varlen_attention)


def prepare_model(model: Any, batching: str) -> None:
    """Switch the model's attention to the one `batching` needs (padded: as loaded)."""
    if batching not in BATCHING_MODES:
        raise ValueError(f"em_training.batching: expected one of {', '.join(BATCHING_MODES)}, found {batching!r}")
    if batching == "padded":
        return
    register_attention()
    model.set_attn_implementation(ATTENTION_OF_MODE[batching])


def data_collator(batching: str, pad_token_id: int) -> Any:
    """The packing collator for `packed` mode; None (trl's padding collator) otherwise."""
    if batching != "packed":
        return None
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=pad_token_id, padding_free=True)


def length_grouped_order(
    lengths: Sequence[int], global_batch: int, seed: int, grouping: str
) -> list[int]:
    """Row indices in training order (see the module doc). With `dataset` grouping the
    global batches are shuffled, the one holding the longest row first (an
    out-of-memory error shows at the first step), a short last batch last."""
    if grouping not in LENGTH_GROUPINGS:
        raise ValueError(
            f"em_training.length_grouping: expected one of {', '.join(LENGTH_GROUPINGS)}, found {grouping!r}"
        )
    rng = random.Random(seed)
    order = list(range(len(lengths)))
    rng.shuffle(order)
    if grouping == "none":
        return order
    span = global_batch if grouping == "batch" else global_batch * MEGABATCH
    chunks = [sorted(order[i : i + span], key=lambda r: -lengths[r]) for i in range(0, len(order), span)]
    if grouping == "batch":
        return [r for chunk in chunks for r in chunk]
    batches = [chunk[i : i + global_batch] for chunk in chunks for i in range(0, len(chunk), global_batch)]
    tail = [batches.pop()] if len(batches[-1]) < global_batch else []
    rng.shuffle(batches)
    if batches:
        longest = max(range(len(batches)), key=lambda b: max(lengths[r] for r in batches[b]))
        batches.insert(0, batches.pop(longest))
    return [r for batch in batches + tail for r in batch]


class LengthGroupedOrder:
    """A sampler over `length_grouped_order`, reseeded each epoch."""

    def __init__(self, lengths: Sequence[int], global_batch: int, seed: int, grouping: str):
        self.lengths, self.global_batch, self.seed, self.grouping = lengths, global_batch, seed, grouping
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.lengths)

    def __iter__(self) -> Iterator[int]:
        return iter(length_grouped_order(self.lengths, self.global_batch, self.seed + self.epoch, self.grouping))
