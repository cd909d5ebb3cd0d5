"""The engine layer: one interface for every generation stage (persona teacher,
student and introspection, evaluation sampling), implemented by transformers (CPU,
tests) and vLLM (cluster). Both return the same `Completion` records.

Determinism: requests are cut into batches from the full, ordered request list;
each batch is seeded from the seeds of its requests, so a resumed run (which skips
finished batches) produces the same text as an uninterrupted one.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Protocol


@dataclass(frozen=True)
class SamplingParams:
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 600
    n: int = 1  # samples per request
    top_k: int = 0  # 0: off (transformers would otherwise apply 50)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)


@dataclass(frozen=True)
class GenerationRequest:
    key: str  # unique and stable: identifies the request across resumes
    messages: tuple[dict, ...]  # chat messages; the template is applied by the engine
    params: SamplingParams = field(default_factory=SamplingParams)
    seed: int = 0
    adapter: str | None = None  # name of a LoRA added with `add_adapter`; None: the model itself


@dataclass(frozen=True)
class Completion:
    key: str
    sample_idx: int
    text: str
    finish_reason: str  # "stop" | "length"
    n_prompt_tokens: int
    n_completion_tokens: int
    prompt: str  # the rendered prompt, chat template applied


class Engine(Protocol):
    name: str  # "transformers" | "vllm"
    version: str  # library version
    loads: int  # model loads so far (tests count them)

    def add_adapter(self, name: str, path: str) -> None:
        """Register a LoRA adapter to serve on top of the loaded model."""

    def generate(self, requests: Iterable[GenerationRequest]) -> Iterator[list[Completion]]:
        """Yield completions batch by batch (each batch: all samples of its requests)."""


def request_batches(
    requests: list[GenerationRequest], max_sequences: int, mix_adapters: bool = False
) -> list[list[GenerationRequest]]:
    """Cut requests into batches of at most `max_sequences` sequences (n per request),
    never mixing sampling settings, nor adapters unless `mix_adapters` (an engine that
    serves several LoRAs in one batch, like vLLM). Order-preserving and a pure
    function of the request list, so batch boundaries are the same on resume."""
    batches: list[list[GenerationRequest]] = []
    current: list[GenerationRequest] = []
    size = 0
    for request in requests:
        n = request.params.n
        same_kind = not current or (
            (mix_adapters or current[0].adapter == request.adapter)
            and current[0].params == request.params
        )
        if current and (not same_kind or size + n > max_sequences):
            batches.append(current)
            current, size = [], 0
        current.append(request)
        size += n
    if current:
        batches.append(current)
    return batches


def batch_seed(batch: list[GenerationRequest]) -> int:
    """Seed of a batch: derived from its first request's key and seed."""
    import hashlib

    digest = hashlib.sha256(f"{batch[0].seed}:{batch[0].key}".encode()).hexdigest()
    return int(digest[:8], 16)


# -- scoring: what a model says, read from its own next-token probabilities ----------

NUMBER = "number"  # the 0..100 answer's distribution (as the local judge scores it)
CHOICE = "choice"  # the probability of each choice token (e.g. "A", "B")
NUMBER_CANDIDATES = tuple(str(k) for k in range(101))


@dataclass(frozen=True)
class ScoringRequest:
    key: str  # unique and stable
    messages: tuple[dict, ...]  # chat messages; the answer follows the assistant header
    kind: str = NUMBER  # NUMBER | CHOICE
    choices: tuple[str, ...] = ()  # CHOICE: the candidate answers, e.g. ("A", "B")
    adapter: str | None = None  # a LoRA added with `add_adapter`; None: the model itself

    def candidates(self) -> tuple[str, ...]:
        if self.kind == NUMBER:
            return NUMBER_CANDIDATES
        if self.kind == CHOICE and self.choices:
            return self.choices
        raise ValueError(f"scoring request '{self.key}': kind '{self.kind}' with choices {self.choices}; expected number, or choice with candidates")


@dataclass(frozen=True)
class Scoring:
    key: str
    probabilities: dict[str, float]  # candidate -> P(the model answers exactly it)
    n_prompt_tokens: int


def scoring_batches(requests: list[ScoringRequest], max_requests: int) -> list[list[ScoringRequest]]:
    """Consecutive batches of at most `max_requests`, never mixing adapters or candidate
    sets (one candidate trie per batch); order-preserving."""
    batches: list[list[ScoringRequest]] = []
    for request in requests:
        last = batches[-1] if batches else None
        if last and len(last) < max_requests and last[0].adapter == request.adapter and last[0].candidates() == request.candidates():
            last.append(request)
        else:
            batches.append([request])
    return batches
