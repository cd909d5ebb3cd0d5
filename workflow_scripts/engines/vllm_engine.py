"""vLLM engine: the cluster's sampler, same interface and records as the transformers engine.

One engine load per persona model; every EM adapter of that persona is served as a
LoRA (`LoRARequest`, a stable integer id per adapter in order of `add_adapter`), so a
persona's datasets and its no-EM control share the load. vLLM schedules the requests
of one chunk together (continuous batching, LoRAs mixed in one batch); chunks exist
only so that a killed job loses at most the last one.

Prompts are rendered with the model's own tokenizer exactly as `chat.render` does
for the transformers engine, tokenized without extra special tokens, and handed to
vLLM as token ids: both engines see the same input tokens.

`fold_em_adapter=True` is the fallback where LoRA serving fails (an engine build
without LoRA kernels, an adapter layout vLLM refuses): each EM adapter is merged into
a copy of the persona weights (peft `merge_and_unload`) and served by its own engine.
Cost per adapter: one load of the full model on CPU to merge, one full-size copy on
disk (about 15 GB for a 7-8B model in bf16) and one more vLLM start (model load,
profiling, graph capture: about 1-2 min for 7-8B); `loads` counts them.

vllm is imported only inside this class, so the rest of the workflow never needs it.
"""

from __future__ import annotations

import gc
import logging
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from workflow_scripts.core.chat import render
from workflow_scripts.core.io_utils import InputError, check_safetensors, read_json
from workflow_scripts.engines.base import (
    NUMBER_CANDIDATES,
    Completion,
    GenerationRequest,
    Scoring,
    ScoringRequest,
    request_batches,
    scoring_batches,
)

log = logging.getLogger(__name__)

SCORING_TOP_LOGPROBS = 20  # next-token alternatives read after a number (vLLM's default max_logprobs)
FINISH_REASONS = {"stop": "stop", "length": "length"}  # vLLM's reason -> ours
VLLM_TOP_K_OFF = -1  # accepted as "off" by old (-1 only) and new (0 or -1) vLLM releases
LORA_RANKS = (1, 8, 16, 32, 64, 128, 256, 320, 512)  # the values vLLM accepts for max_lora_rank


class VllmEngine:
    name = "vllm"

    def __init__(
        self,
        model_dir: str,
        max_loras: int = 8,
        max_lora_rank: int = 64,
        gpu_memory_utilization: float = 0.85,
        max_model_len: int = 4096,
        fold_em_adapter: bool = False,
        dtype: str = "auto",
        max_batch_sequences: int = 4096,
        seed: int = 0,
        fold_dir: str | None = None,
        **llm_options: Any,
    ):
        import vllm

        if max_lora_rank not in LORA_RANKS:
            raise InputError(
                f"sampling.vllm.max_lora_rank: vLLM accepts one of {list(LORA_RANKS)}; "
                f"found {max_lora_rank}"
            )
        self.version = vllm.__version__
        self.model_dir = str(model_dir)
        self.max_loras = max_loras
        self.max_lora_rank = max_lora_rank
        self.fold_em_adapter = fold_em_adapter
        self.max_batch_sequences = max_batch_sequences
        self.llm_options = {
            "gpu_memory_utilization": gpu_memory_utilization,
            "max_model_len": max_model_len,
            "dtype": dtype,
            "seed": seed,
            **llm_options,
        }
        self.options = {
            "max_loras": max_loras,
            "max_lora_rank": max_lora_rank,
            "fold_em_adapter": fold_em_adapter,
            "max_batch_sequences": max_batch_sequences,
            **self.llm_options,
        }
        self.loads = 0
        self.tokenizer = _load_tokenizer(self.model_dir)
        self._stop_ids = _stop_token_ids(self.model_dir, self.tokenizer)
        self._adapters: dict[str, tuple[int, str]] = {}  # name -> (lora int id, path)
        self._llm: Any = None
        self._llm_key: tuple | None = None  # (folded adapter or None, LoRA serving on)
        self._fold_root = Path(fold_dir) if fold_dir else None

    # -- adapters -------------------------------------------------------------------

    def add_adapter(self, name: str, path: str) -> None:
        if name in self._adapters:
            raise ValueError(f"adapter '{name}' was already added to the engine")
        config_file = Path(path) / "adapter_config.json"
        if not config_file.exists():
            raise InputError(f"{path}: not a LoRA adapter directory (no adapter_config.json)")
        config = read_json(config_file)
        check_safetensors(path)
        if config.get("use_dora"):
            raise InputError(
                f"{config_file}: use_dora: vLLM cannot serve DoRA adapters; found true"
            )
        rank = max(
            [int(config.get("r", 0)), *map(int, (config.get("rank_pattern") or {}).values())]
        )
        if not self.fold_em_adapter and rank > self.max_lora_rank:
            raise InputError(
                f"{config_file}: r: adapter rank {rank} exceeds sampling.vllm.max_lora_rank "
                f"{self.max_lora_rank}; raise max_lora_rank or set fold_em_adapter"
            )
        self._adapters[name] = (len(self._adapters) + 1, str(path))

    def lora_request(self, name: str) -> Any:
        from vllm.lora.request import LoRARequest

        try:
            lora_id, path = self._adapters[name]
        except KeyError:
            raise KeyError(f"adapter '{name}' was not added to the engine") from None
        return LoRARequest(name, lora_id, path)

    # -- generation -----------------------------------------------------------------

    def generate(
        self, requests: Iterable[GenerationRequest], skip_keys: set | None = None
    ) -> Iterator[list[Completion]]:
        """Yield each chunk's completions; chunks whose every key is in `skip_keys`
        (finished before a kill) are skipped. Each request carries its own seed, so
        a request's answers do not depend on which chunk it lands in."""
        requests = list(requests)
        for name in {r.adapter for r in requests} - {None} - set(self._adapters):
            raise KeyError(f"adapter '{name}' was not added to the engine")
        if self.fold_em_adapter:
            # one engine per adapter: group by adapter (first-appearance order, stable,
            # so chunk boundaries are the same on resume) so each is loaded once
            first_seen = {a: i for i, a in reversed(list(enumerate(r.adapter for r in requests)))}
            requests = sorted(requests, key=lambda r: first_seen[r.adapter])
            chunks = request_batches(requests, self.max_batch_sequences)
        else:
            chunks = request_batches(requests, self.max_batch_sequences, mix_adapters=True)
        for chunk in chunks:
            if skip_keys and all(r.key in skip_keys for r in chunk):
                continue
            yield self._generate_chunk(chunk)

    def _generate_chunk(self, chunk: list[GenerationRequest]) -> list[Completion]:
        prompts = [render(self.tokenizer, list(r.messages)) for r in chunk]
        token_ids = [self.tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
        if self.fold_em_adapter:
            llm = self._engine_serving(chunk[0].adapter)
            lora = None
        else:
            llm = self._engine_serving(None)
            lora = [None if r.adapter is None else self.lora_request(r.adapter) for r in chunk]
        outputs = llm.generate(
            [{"prompt_token_ids": ids} for ids in token_ids],
            [self.sampling_params(r) for r in chunk],
            lora_request=lora,
            use_tqdm=False,
        )
        completions = []
        for request, prompt, ids, output in zip(chunk, prompts, token_ids, outputs, strict=True):
            for sample in sorted(output.outputs, key=lambda s: s.index):
                completions.append(
                    Completion(
                        key=request.key,
                        sample_idx=sample.index,
                        text=sample.text.strip(),
                        finish_reason=finish_reason(sample.finish_reason, request.key),
                        n_prompt_tokens=len(ids),
                        n_completion_tokens=len(sample.token_ids),
                        prompt=prompt,
                    )
                )
        return completions

    def sampling_params(self, request: GenerationRequest) -> Any:
        from vllm import SamplingParams

        params = request.params
        return SamplingParams(
            n=params.n,
            temperature=params.temperature,
            top_p=params.top_p,
            top_k=params.top_k if params.top_k > 0 else VLLM_TOP_K_OFF,
            max_tokens=params.max_new_tokens,
            seed=request.seed,
            stop_token_ids=list(self._stop_ids),
            skip_special_tokens=True,
            # explicit, so no default of the model's generation_config applies
            min_p=0.0,
            repetition_penalty=1.0,
            presence_penalty=0.0,
            frequency_penalty=0.0,
            min_tokens=0,
        )

    # -- scoring --------------------------------------------------------------------

    def score(self, requests: Iterable[ScoringRequest]) -> Iterator[list[Scoring]]:
        """Candidate probabilities from prompt logprobs: each candidate's tokens are
        appended to the prompt, and P(candidate) is the product of their prompt
        logprobs; for a number, times P(the next token does not start with a digit),
        read from the top logprobs after it (the local judge's rule, so "8" is not
        credited with the mass of "85"). vLLM's prefix cache computes the shared prompt
        once per request."""
        requests = list(requests)
        for name in {r.adapter for r in requests} - {None} - set(self._adapters):
            raise KeyError(f"adapter '{name}' was not added to the engine")
        if self.fold_em_adapter:
            first_seen = {a: i for i, a in reversed(list(enumerate(r.adapter for r in requests)))}
            requests = sorted(requests, key=lambda r: first_seen[r.adapter])
        width = max(1, self.max_batch_sequences // len(NUMBER_CANDIDATES))
        for chunk in scoring_batches(requests, width):
            yield self._score_chunk(chunk)

    def _score_chunk(self, chunk: list[ScoringRequest]) -> list[Scoring]:
        import math

        from vllm import SamplingParams

        from workflow_scripts.judging.local_judge import continuation_ids, digit_start_ids

        candidates = chunk[0].candidates()
        continuations = continuation_ids(self.tokenizer, candidates)
        if not hasattr(self, "_digit_ids"):
            self._digit_ids = frozenset(digit_start_ids(self.tokenizer))
        prompt_ids = [
            self.tokenizer(render(self.tokenizer, list(r.messages)), add_special_tokens=False)["input_ids"]
            for r in chunk
        ]
        inputs = [{"prompt_token_ids": ids + continuations[c]} for ids in prompt_ids for c in candidates]
        if self.fold_em_adapter:
            llm, lora = self._engine_serving(chunk[0].adapter), None
        else:
            llm = self._engine_serving(None)
            request_lora = [None if r.adapter is None else self.lora_request(r.adapter) for r in chunk]
            lora = [request_lora[i] for i in range(len(chunk)) for _ in candidates]
        params = SamplingParams(
            n=1, temperature=0.0, max_tokens=1, prompt_logprobs=1, logprobs=SCORING_TOP_LOGPROBS, seed=0
        )
        outputs = llm.generate(inputs, params, lora_request=lora, use_tqdm=False)
        scorings = []
        for i, (request, ids) in enumerate(zip(chunk, prompt_ids, strict=True)):
            dist = {}
            for j, candidate in enumerate(candidates):
                output = outputs[i * len(candidates) + j]
                tokens = continuations[candidate]
                logp = sum(
                    output.prompt_logprobs[len(ids) + k][token].logprob for k, token in enumerate(tokens)
                )
                p = math.exp(logp)
                if candidate in NUMBER_CANDIDATES:
                    after = output.outputs[0].logprobs[0]
                    digit = sum(math.exp(v.logprob) for t, v in after.items() if t in self._digit_ids)
                    p *= max(0.0, 1.0 - digit)
                dist[candidate] = p
            scorings.append(Scoring(request.key, dist, len(ids)))
        return scorings

    # -- engine loads ---------------------------------------------------------------

    def _engine_serving(self, adapter: str | None) -> Any:
        """The vLLM engine for `adapter` (None: the persona model with LoRAs enabled,
        or, when folding, the persona model itself)."""
        wanted = adapter if self.fold_em_adapter else None
        serve_loras = bool(self._adapters) and not self.fold_em_adapter
        if self._llm is not None and self._llm_key == (wanted, serve_loras):
            return self._llm
        self._release()
        from vllm import LLM

        model = self.model_dir if wanted is None else str(self._folded_model(wanted))
        options = dict(self.llm_options)
        if serve_loras:
            options.update(
                enable_lora=True,
                max_loras=min(self.max_loras, len(self._adapters)),
                max_lora_rank=self.max_lora_rank,
            )
        log.info("loading vLLM engine: %s (LoRA serving: %s)", model, serve_loras)
        self._llm = LLM(model=model, tokenizer=self.model_dir, **options)
        self._llm_key = (wanted, serve_loras)
        self.loads += 1
        return self._llm

    def _folded_model(self, adapter: str) -> Path:
        if self._fold_root is None:
            self._fold_root = Path(tempfile.mkdtemp(prefix="persona-em-fold-"))
        out = self._fold_root / adapter
        if not (out / "config.json").exists():
            fold_adapter(self.model_dir, self._adapters[adapter][1], out)
        return out

    def _release(self) -> None:
        if self._llm is None:
            return
        engine_core = getattr(getattr(self._llm, "llm_engine", None), "engine_core", None)
        if engine_core is not None and hasattr(engine_core, "shutdown"):
            engine_core.shutdown()
        self._llm = None
        self._llm_key = None
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def close(self) -> None:
        """Free the engine and any folded copies this engine wrote to a temporary dir."""
        self._release()
        if self._fold_root is not None and self._fold_root.name.startswith("persona-em-fold-"):
            shutil.rmtree(self._fold_root, ignore_errors=True)


def finish_reason(reason: str | None, key: str) -> str:
    try:
        return FINISH_REASONS[reason or ""]
    except KeyError:
        raise RuntimeError(
            f"vLLM finished request '{key}' with reason '{reason}'; expected stop or length"
        ) from None


def fold_adapter(model_dir: str, adapter_dir: str, out_dir: Path) -> None:
    """Merge a LoRA adapter into a copy of the model's weights (peft `merge_and_unload`),
    in the model's stored dtype, with the model's tokenizer files beside it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from workflow_scripts.core.io_utils import atomic_dir

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype="auto", device_map="cpu")
    with torch.no_grad():
        merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    with atomic_dir(out_dir) as tmp:
        merged.save_pretrained(tmp)
        _load_tokenizer(model_dir).save_pretrained(tmp)


def _load_tokenizer(model_dir: str) -> Any:
    from workflow_scripts.models.loading import load_tokenizer

    return load_tokenizer(model_dir, padding_side="left")


def _stop_token_ids(model_dir: str, tokenizer: Any) -> list[int]:
    """The same stop tokens as the transformers engine: generation_config's eos ids
    plus the tokenizer's eos."""
    ids: Any = None
    for name in ("generation_config.json", "config.json"):
        config_file = Path(model_dir) / name
        if ids is None and config_file.exists():
            ids = read_json(config_file).get("eos_token_id")
    ids = list(ids) if isinstance(ids, list | tuple) else ([ids] if ids is not None else [])
    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id not in ids:
        ids.append(tokenizer.eos_token_id)
    return ids
