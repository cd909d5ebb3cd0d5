"""A local judge (transformers) that yields the full 0..100 distribution, also for
tokenizers that split numbers into digits (SmolLM2, Qwen, Llama-2 ...).

For every candidate k in 0..100 (and the labels CODE, REFUSAL):

    P(k) = P(tokens of k | prompt) x P(next token does not start with a digit | prompt, k)

The second factor keeps "8" from taking the mass of "85". All candidates are
scored in ONE forward pass per batch: the candidates' tokens form a trie (0..100
is exactly 101 nodes when digits are single tokens), appended after the prompt;
a tree attention mask lets each node see the whole prompt and its own ancestors
only, and its position is the prompt length plus its depth. So the prompt's
keys and values are computed once and shared by every candidate (the same sharing
a KV cache gives, without copying the cache per candidate), and only the logits
of the last prompt position and the trie nodes are materialised.

Prompts are batched with left padding; a padded query row attends to itself only
(never to nothing, which would give NaN).
"""

from __future__ import annotations

import contextlib
import logging
import os
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from workflow_scripts.core.chat import messages_for, render
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.logprob import CODE, REFUSAL
from workflow_scripts.judging.tasks import JudgeTask, judgement_record

log = logging.getLogger(__name__)

NUMBER_CANDIDATES = tuple(str(k) for k in range(101))
LABEL_CANDIDATES = (CODE, REFUSAL)


@dataclass(frozen=True)
class CandidateTrie:
    tokens: tuple[int, ...]  # token id of each node; parents come before children
    parents: tuple[int, ...]  # parent node, -1 for a child of the prompt
    depths: tuple[int, ...]  # 1 for a child of the prompt
    ends: dict[str, int]  # candidate -> its last node
    numbers: frozenset[str]  # candidates that must not be followed by a digit

    def __len__(self) -> int:
        return len(self.tokens)

    @classmethod
    def build(cls, continuations: dict[str, list[int]], numbers: Sequence[str]) -> CandidateTrie:
        tokens: list[int] = []
        parents: list[int] = []
        depths: list[int] = []
        children: dict[tuple[int, int], int] = {}
        ends: dict[str, int] = {}
        for candidate, ids in continuations.items():
            if not ids:
                raise ValueError(f"candidate {candidate!r} tokenizes to nothing")
            node = -1
            for depth, token in enumerate(ids, start=1):
                child = children.get((node, token))
                if child is None:
                    child = len(tokens)
                    tokens.append(token)
                    parents.append(node)
                    depths.append(depth)
                    children[(node, token)] = child
                node = child
            ends[candidate] = node
        return cls(tuple(tokens), tuple(parents), tuple(depths), ends, frozenset(numbers))


def continuation_ids(tokenizer, candidates: Sequence[str]) -> dict[str, list[int]]:
    """Token ids of each candidate as the judge would write it right after the
    assistant header (tokenized in context, so prefix-space conventions are kept)."""
    header = render(tokenizer, messages_for("Rate this."))
    header_ids = tokenizer(header, add_special_tokens=False)["input_ids"]
    result = {}
    for candidate in candidates:
        ids = tokenizer(header + candidate, add_special_tokens=False)["input_ids"]
        if ids[: len(header_ids)] != header_ids:
            raise ValueError(f"tokenizer merges candidate {candidate!r} into the assistant header")
        result[candidate] = ids[len(header_ids) :]
    return result


def digit_start_ids(tokenizer) -> list[int]:
    """Tokens whose text starts with a digit: any of them after k makes a longer number."""
    ids = []
    for token_id in range(len(tokenizer)):
        text = tokenizer.decode([token_id])
        if text[:1].isascii() and text[:1].isdigit():
            ids.append(token_id)
    return ids


class LocalJudge:
    method = "logprob"

    def __init__(
        self,
        model_dir: str | os.PathLike | None,
        judge_id: str,
        batch_size: int = 8,
        device: str | None = None,
        model=None,
        tokenizer=None,
        candidates: Sequence[str] = NUMBER_CANDIDATES + LABEL_CANDIDATES,
        numbers: Sequence[str] = NUMBER_CANDIDATES,
    ):
        """`candidates`: the answers scored (any text: the self-knowledge battery scores
        "A" and "B"); `numbers`: those that must not be followed by a digit."""
        from workflow_scripts.models.loading import load_model, load_tokenizer

        self.judge_id = judge_id
        self.batch_size = batch_size
        self.tokenizer = tokenizer or load_tokenizer(model_dir, padding_side="left")
        self.model = model or load_model(model_dir, device=device)
        self.trie = CandidateTrie.build(continuation_ids(self.tokenizer, candidates), numbers)
        self._digit_ids = digit_start_ids(self.tokenizer) if numbers else []  # no numbers: never read
        self._tree_mask = None

    # ------------------------------------------------------------------ scoring
    def prompt_ids(self, prompt: str) -> list[int]:
        text = render(self.tokenizer, messages_for(prompt))
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def distributions(self, prompts: Sequence[str]) -> list[dict[str, float]]:
        """{candidate: probability} for each prompt (one forward pass for all)."""
        return self.distributions_of_ids([self.prompt_ids(p) for p in prompts])

    def distributions_of_ids(self, batch: Sequence[list[int]]) -> list[dict[str, float]]:
        import torch

        device = self.model.device
        trie = self.trie
        n_nodes = len(trie)
        longest = max(len(ids) for ids in batch)
        width = longest + n_nodes
        pad_id = self.tokenizer.pad_token_id or 0
        input_ids = torch.full((len(batch), width), pad_id, dtype=torch.long)
        positions = torch.zeros((len(batch), width), dtype=torch.long)
        allowed = torch.zeros((len(batch), width, width), dtype=torch.bool)
        tree_tokens = torch.tensor(trie.tokens, dtype=torch.long)
        depths = torch.tensor(trie.depths, dtype=torch.long)
        tree = self._tree_allowed()
        causal = torch.ones((longest, longest), dtype=torch.bool).tril()
        for row, ids in enumerate(batch):
            start = longest - len(ids)
            input_ids[row, start:longest] = torch.tensor(ids, dtype=torch.long)
            input_ids[row, longest:] = tree_tokens
            positions[row, start:longest] = torch.arange(len(ids))
            positions[row, longest:] = len(ids) - 1 + depths
            allowed[row, :longest, :longest] = causal
            allowed[row, :, :start] = False
            allowed[row, longest:, start:longest] = True
            allowed[row, longest:, longest:] = tree
            pads = torch.arange(start)
            allowed[row, pads, pads] = True  # a padded query sees itself: no empty softmax row
        dtype = self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        with torch.inference_mode():
            out = self.model(
                input_ids=input_ids.to(device),
                attention_mask=mask[:, None].to(device),
                position_ids=positions.to(device),
                logits_to_keep=n_nodes + 1,
                use_cache=False,
            )
            # row 0: the last prompt position; row 1 + n: trie node n
            logprobs = torch.log_softmax(out.logits.float(), dim=-1)
            parent_rows = torch.tensor([p + 1 for p in trie.parents], device=logprobs.device)
            token_logp = logprobs[:, parent_rows, tree_tokens.to(logprobs.device)]  # (B, nodes)
            digit_ids = torch.tensor(self._digit_ids, dtype=torch.long, device=logprobs.device)
            digit_p = logprobs[:, 1:, :].index_select(-1, digit_ids).exp().sum(-1)  # (B, nodes)
        path = torch.zeros_like(token_logp)
        for node, parent in enumerate(trie.parents):  # parents come first
            path[:, node] = token_logp[:, node] + (path[:, parent] if parent >= 0 else 0.0)
        results = []
        path_p = path.exp().cpu()
        stop_p = (1.0 - digit_p).clamp(min=0.0).cpu()
        for row in range(len(batch)):
            dist = {}
            for candidate, node in trie.ends.items():
                p = path_p[row, node]
                if candidate in trie.numbers:
                    p = p * stop_p[row, node]
                dist[candidate] = float(p)
            results.append(dist)
        return results

    def _tree_allowed(self):
        """(nodes, nodes) bool: node i may attend to node j when j is i or an ancestor."""
        import torch

        if self._tree_mask is None:
            n = len(self.trie)
            allowed = torch.eye(n, dtype=torch.bool)
            for node, parent in enumerate(self.trie.parents):
                if parent >= 0:
                    allowed[node] |= allowed[parent]
            self._tree_mask = allowed
        return self._tree_mask

    # ------------------------------------------------------------------ judging
    def judge(self, tasks: Sequence[JudgeTask], on_record: Callable[[dict], None], handle_signals: bool = False) -> dict:
        """Judge in batches of similar length; each batch's records are passed on
        (and cached) before the next batch starts."""
        encoded = sorted(((len(ids), t.key, ids, t) for t in tasks for ids in [self.prompt_ids(t.prompt)]), key=lambda x: (x[0], x[1]))
        start = time.monotonic()
        tokens = 0
        for first in range(0, len(encoded), self.batch_size):
            chunk = encoded[first : first + self.batch_size]
            dists = self.distributions_of_ids([ids for _, _, ids, _ in chunk])
            for (length, _, _, task), dist in zip(chunk, dists, strict=True):
                tokens += length
                on_record(
                    judgement_record(
                        task,
                        self.judge_id,
                        self.method,
                        dist=dist,
                        reply=max(dist, key=dist.get),
                        usage={"prompt_tokens": length, "completion_tokens": 0},
                        cost_usd=0.0,
                        attempts=1,
                    )
                )
            log.info("judged %d/%d locally", min(first + self.batch_size, len(encoded)), len(encoded))
        elapsed = time.monotonic() - start
        return {"tasks": len(tasks), "judged": len(tasks), "prompt_tokens": tokens, "seconds": round(elapsed, 3)}


@contextlib.contextmanager
def open_judge(
    settings: Any,
    judge_id: str,
    judge_model_dir: str | os.PathLike | None,
    environ: Mapping[str, str],
    server_log: str | os.PathLike,
) -> Iterator[tuple[LocalJudge, None]]:
    """Judge kind `local`: the config model's directory, scored in this process."""
    if judge_model_dir is None:
        raise InputError(f"judge.model: the local judge '{settings.model}' needs its model directory as input")
    yield LocalJudge(judge_model_dir, judge_id, batch_size=settings.batch_size), None
