"""transformers engine: CPU runs and tests, and a GPU sampler where vLLM is not wanted.

Batched, left-padded, seeded per batch, `top_k=0` unless asked (transformers
applies top_k=50 by default). Every sampling setting is explicit: the model's own
`generation_config` (a repetition penalty, say) is replaced by one that holds only
its special tokens, so plain `generate`, the static-cache loop and vLLM decode alike. EM adapters are served with peft on the one loaded
model: `set_adapter` per batch, adapters disabled for the model itself.

Decoding (`decode`): "generate" is plain `model.generate` (the CPU default);
"graphs" (the CUDA default) is a static KV cache with the decode step replayed as
a CUDA graph (static_decode.py), several times faster on a GPU; "static" is the
same static-cache loop without graphs (tests check it against "generate").
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Iterator
from typing import Any

from workflow_scripts.core.chat import render
from workflow_scripts.engines.base import (
    Completion,
    GenerationRequest,
    Scoring,
    ScoringRequest,
    batch_seed,
    request_batches,
    scoring_batches,
)
from workflow_scripts.models.loading import load_model, load_tokenizer

logger = logging.getLogger(__name__)

# generate() options a model's generation_config may set that change the tokens drawn,
# held at their no-effect values; sampling itself (do_sample, temperature, top_p,
# top_k) is passed with every request
NEUTRAL_GENERATION: dict[str, Any] = {
    "min_p": None,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
    "min_new_tokens": None,
    "num_beams": 1,
    "bad_words_ids": None,
    "suppress_tokens": None,
    "begin_suppress_tokens": None,
    "forced_bos_token_id": None,
    "forced_eos_token_id": None,
    "sequence_bias": None,
    "renormalize_logits": False,
}
SAMPLING_KEYS = ("do_sample", "temperature", "top_p", "top_k")


class TransformersEngine:
    name = "transformers"

    def __init__(
        self,
        model_dir: str,
        dtype: str | None = None,
        device: str | None = None,
        max_batch_sequences: int = 32,
        decode: str = "auto",
        gpus: int = 1,
    ):
        import transformers

        self.version = transformers.__version__
        # gpus > 1: the layers split across the job's GPUs (the fallback to vLLM's
        # tensor parallelism; one GPU computes at a time)
        self.model = load_model(model_dir, dtype=dtype, device=device, gpus=gpus)
        self.gpus = gpus
        if gpus > 1 and decode != "generate":
            decode = "generate"  # the static decoder's cache and graphs live on one device
        self.tokenizer = load_tokenizer(model_dir, padding_side="left")
        self.loads = 1
        self.max_batch_sequences = max_batch_sequences
        self._fitting_requests: int | None = None  # lowered after a GPU out-of-memory
        self._peft: Any = None
        self._stop_ids = self._eos_ids()
        self._neutral_generation_config()
        self.decode = self._decode_mode(decode)
        self._decoder: Any = None
        self._scorers: dict[tuple[str, ...], Any] = {}  # candidates -> candidate scorer
        if self.decode != "generate":
            from workflow_scripts.engines.static_decode import StaticDecoder

            self._decoder = StaticDecoder(self.model, use_graphs=self.decode == "graphs")
        self.options = {
            "dtype": str(self.model.dtype).removeprefix("torch."),
            "device": self.model.device.type,
            "max_batch_sequences": max_batch_sequences,
            "decode": self.decode,
            **({"gpus": gpus} if gpus > 1 else {}),
        }

    def _decode_mode(self, decode: str) -> str:
        from workflow_scripts.engines.static_decode import supports_static_decode

        if decode not in {"auto", "generate", "static", "graphs"}:
            raise ValueError(
                f"transformers engine: decode '{decode}'; expected auto, generate, static or graphs"
            )
        on_cuda = self.model.device.type == "cuda"
        if decode == "auto":
            decode = "graphs" if on_cuda else "generate"
        if decode == "graphs" and not on_cuda:
            raise ValueError("transformers engine: decode 'graphs' needs a CUDA device")
        if decode != "generate" and not supports_static_decode(self.model):
            return "generate"
        return decode

    def _neutral_generation_config(self) -> None:
        """Replace the model's generation_config by one that holds only its special
        tokens; transformers fills every unset generate() option from it."""
        from transformers import GenerationConfig

        own = self.model.generation_config
        ignored = {
            key: value
            for key, value in own.to_diff_dict().items()
            if key in (*NEUTRAL_GENERATION, *SAMPLING_KEYS)
            and value != NEUTRAL_GENERATION.get(key)
        }
        if ignored:
            logger.info("the model's generation_config is not applied: %s", ignored)
        self.model.generation_config = GenerationConfig(
            bos_token_id=own.bos_token_id,
            eos_token_id=self._stop_ids,
            pad_token_id=self.tokenizer.pad_token_id,
            **NEUTRAL_GENERATION,
        )

    def _eos_ids(self) -> list[int]:
        ids = self.model.generation_config.eos_token_id
        ids = list(ids) if isinstance(ids, list | tuple) else ([ids] if ids is not None else [])
        if self.tokenizer.eos_token_id is not None and self.tokenizer.eos_token_id not in ids:
            ids.append(self.tokenizer.eos_token_id)
        return ids

    def add_adapter(self, name: str, path: str) -> None:
        from peft import PeftModel

        from workflow_scripts.core.io_utils import check_safetensors

        check_safetensors(path)
        if self._peft is None:
            self._peft = PeftModel.from_pretrained(self.model, path, adapter_name=name)
            self._peft.eval()
        else:
            self._peft.load_adapter(path, adapter_name=name)

    @contextlib.contextmanager
    def _serving(self, adapter: str | None) -> Iterator[Any]:
        if self._peft is None:
            if adapter is not None:
                raise KeyError(f"adapter '{adapter}' was not added to the engine")
            yield self.model
        elif adapter is None:
            with self._peft.disable_adapter():
                yield self._peft
        else:
            self._peft.set_adapter(adapter)
            yield self._peft

    def generate(
        self, requests: Iterable[GenerationRequest], skip_keys: set | None = None
    ) -> Iterator[list[Completion]]:
        """Yield each batch's completions; batches whose every key is in `skip_keys`
        (finished before a kill) are skipped without changing the others' seeds."""
        for batch in request_batches(list(requests), self.max_batch_sequences):
            if skip_keys and all(r.key in skip_keys for r in batch):
                continue
            yield self._generate_fitting(batch)

    def _generate_fitting(self, batch: list[GenerationRequest]) -> list[Completion]:
        """GPU out-of-memory: halve the batch and retry, and keep later batches at the
        size that fitted. Each part is seeded from its own first key, so a rerun that
        hits the same limit draws the same samples."""
        import torch

        limit = self._fitting_requests
        if limit is not None and len(batch) > limit:
            parts = [batch[i : i + limit] for i in range(0, len(batch), limit)]
            return [c for part in parts for c in self._generate_fitting(part)]
        try:
            return self._generate_batch(batch)
        except torch.OutOfMemoryError:
            if len(batch) == 1:
                raise
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            self._fitting_requests = len(batch) // 2
            logger.warning(
                "out of memory on a batch of %d requests; retrying with at most %d",
                len(batch),
                self._fitting_requests,
            )
            return self._generate_fitting(batch)

    def _generate_batch(self, batch: list[GenerationRequest]) -> list[Completion]:
        import torch

        tokenizer = self.tokenizer
        prompts = [render(tokenizer, list(r.messages)) for r in batch]
        expanded = [
            (r, i, p) for r, p in zip(batch, prompts, strict=True) for i in range(r.params.n)
        ]
        encoded = tokenizer(
            [p for _, _, p in expanded], return_tensors="pt", padding=True, add_special_tokens=False
        ).to(self.model.device)
        params = batch[0].params
        adapter = batch[0].adapter
        if self._decoder is not None:
            new_tokens = self._decoder.generate(
                model=self._peft if self._peft is not None else self.model,
                adapter_key=adapter,
                serving=lambda: self._serving(adapter),
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                max_new_tokens=params.max_new_tokens,
                temperature=params.temperature,
                top_p=params.top_p,
                top_k=params.top_k,
                stop_ids=self._stop_ids,
                pad_id=tokenizer.pad_token_id,
                seed=batch_seed(batch),
            ).tolist()
        else:
            sample = params.temperature > 0
            kwargs: dict[str, Any] = {
                **NEUTRAL_GENERATION,
                "max_new_tokens": params.max_new_tokens,
                "do_sample": sample,
                "pad_token_id": tokenizer.pad_token_id,
                "eos_token_id": self._stop_ids,
            }
            if sample:
                kwargs.update(
                    temperature=params.temperature, top_p=params.top_p, top_k=params.top_k
                )
            torch.manual_seed(batch_seed(batch))
            with self._serving(adapter) as model, torch.inference_mode():
                output = model.generate(**encoded, **kwargs)
            new_tokens = output[:, encoded["input_ids"].shape[1] :].tolist()
        prompt_lengths = encoded["attention_mask"].sum(dim=1).tolist()
        completions = []
        for (request, sample_idx, prompt), tokens, n_prompt in zip(
            expanded, new_tokens, prompt_lengths, strict=True
        ):
            end = next((j for j, t in enumerate(tokens) if t in self._stop_ids), None)
            kept = tokens if end is None else tokens[:end]
            completions.append(
                Completion(
                    key=request.key,
                    sample_idx=sample_idx,
                    text=tokenizer.decode(kept, skip_special_tokens=True).strip(),
                    finish_reason="length" if end is None else "stop",
                    n_prompt_tokens=int(n_prompt),
                    n_completion_tokens=len(kept) + (0 if end is None else 1),
                    prompt=prompt,
                )
            )
        return completions

    # -- scoring --------------------------------------------------------------------

    def score(self, requests: Iterable[ScoringRequest]) -> Iterator[list[Scoring]]:
        """Yield each batch's candidate probabilities: every candidate of a request is
        scored in one forward pass over the prompt and a trie of the candidates' tokens
        (judging/local_judge.py), so a number split into digits is scored whole and "8"
        is not credited with the mass of "85"."""
        for batch in scoring_batches(list(requests), self.max_batch_sequences):
            scorer = self._scorer(batch[0].candidates())
            ids = [
                self.tokenizer(render(self.tokenizer, list(r.messages)), add_special_tokens=False)["input_ids"]
                for r in batch
            ]
            with self._serving(batch[0].adapter) as model:
                scorer.model = model
                dists = scorer.distributions_of_ids(ids)
            yield [
                Scoring(r.key, dist, len(prompt_ids))
                for r, dist, prompt_ids in zip(batch, dists, ids, strict=True)
            ]

    def _scorer(self, candidates: tuple[str, ...]) -> Any:
        from workflow_scripts.engines.base import NUMBER_CANDIDATES
        from workflow_scripts.judging.local_judge import LocalJudge

        if candidates not in self._scorers:
            numbers = [c for c in candidates if c in NUMBER_CANDIDATES]
            self._scorers[candidates] = LocalJudge(
                None,
                "self",
                model=self.model,
                tokenizer=self.tokenizer,
                candidates=candidates,
                numbers=numbers,
            )
        return self._scorers[candidates]
