"""Generation through the engine layer, written in chunks that survive a kill.

Each engine batch is one chunk: its rows are appended (flushed, fsynced) to
`<output>.partial` before the next batch starts. A resumed run skips every request
whose samples are all on disk; a batch cut short by the kill is generated again with
the same seed and only its missing rows are appended, so nothing is lost beyond the
current chunk and nothing is duplicated. The partial file records the hash of the
stage's settings and inputs (`run_fingerprint`); a rerun after an edit starts over.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from workflow_scripts.core.hashing import sha256_file, weights_hash
from workflow_scripts.core.io_utils import ResumableJsonl
from workflow_scripts.core.progress import Progress
from workflow_scripts.engines.base import Completion, GenerationRequest, SamplingParams

log = logging.getLogger(__name__)


def row_key(row: dict) -> tuple[str, int]:
    return (row["key"], int(row["sample_idx"]))


def completion_row(completion: Completion) -> dict:
    return {
        "key": completion.key,
        "sample_idx": completion.sample_idx,
        "text": completion.text,
        "finish_reason": completion.finish_reason,
        "n_prompt_tokens": completion.n_prompt_tokens,
        "n_completion_tokens": completion.n_completion_tokens,
    }


def sampling_params(
    settings: dict, n: int = 1, max_new_tokens: int | None = None
) -> SamplingParams:
    """Sampling of persona generation (OCT: temperature 0.7, top_p 0.95)."""
    return SamplingParams(
        temperature=float(settings["temperature"]),
        top_p=float(settings["top_p"]),
        max_new_tokens=int(max_new_tokens or settings["max_new_tokens"]),
        n=n,
    )


def done_requests(output: ResumableJsonl, requests: Iterable[GenerationRequest]) -> set[str]:
    """Keys of requests whose every sample is already written."""
    have = output.done_keys
    return {r.key for r in requests if all((r.key, i) in have for i in range(r.params.n))}


def generate_into(
    engine: Any,
    requests: list[GenerationRequest],
    output: ResumableJsonl,
    extra: Callable[[GenerationRequest], dict] | None = None,
) -> int:
    """Generate what `output` lacks, one appended chunk per engine batch; returns the
    number of rows written now. `extra(request)` adds request fields to each row."""
    by_key = {r.key: r for r in requests}
    skip = done_requests(output, requests)
    todo = len(requests) - len(skip)
    if skip:
        log.info("resuming: %d of %d requests already done", len(skip), len(requests))
    written = 0
    total = sum(r.params.n for r in requests)
    already = sum(r.params.n for r in requests if r.key in skip)
    # the heartbeat logs while one engine batch runs for minutes
    with Progress(f"generated ({todo} requests to do)", total, log, start=already) as progress:
        for batch in engine.generate(requests, skip_keys=skip):
            rows = []
            for completion in batch:
                row = completion_row(completion)
                if extra is not None:
                    row.update(extra(by_key[completion.key]))
                rows.append(row)
            before = len(output.rows)
            output.append(rows)
            written += len(output.rows) - before
            progress.update(len(rows), tokens=sum(c.n_completion_tokens or 0 for c in batch))
    return written


def model_identity(model_dir: str | Path) -> Any:
    """A model's recorded composition (cheap: read, not hashed), or the hash of its
    weights for a directory that records none."""
    from workflow_scripts.core.composition import CompositionError, composition_of

    try:
        return composition_of(model_dir).to_dict()
    except CompositionError:
        return weights_hash(model_dir)


def run_fingerprint(
    settings: dict,
    engine: dict,
    files: Iterable[str | Path | None] = (),
    models: Iterable[str | Path] = (),
    adapters: Iterable[str | Path] = (),
    **extra: Any,
) -> dict:
    """What a generation stage's rows depend on: its settings, the engine, the content
    of its input files, the identity of its models (their recorded composition) and the
    weights of the adapters it serves."""
    return {
        "settings": settings,
        "engine": engine,
        "files": {str(f): sha256_file(f) for f in files if f},
        "models": [model_identity(m) for m in models],
        "adapters": [weights_hash(a) for a in adapters],
        **extra,
    }


def open_output(path: str | Path, fingerprint: dict) -> ResumableJsonl:
    return ResumableJsonl(path, key=row_key, fingerprint=fingerprint)


def load_persona_engine(
    engine: dict, model_dir: str | Path, settings: dict, min_model_len: int | None = None
) -> Any:
    """The run's engine (config `sampling.engine`) for a persona generation stage. One
    engine batch is one chunk: `chunk_size` sequences for transformers,
    `vllm_chunk_size` for vLLM (which schedules a chunk continuously). vLLM's context
    is raised to `min_model_len` where a stage needs more than `sampling.vllm`'s."""
    from workflow_scripts.engines.factory import load_engine

    gpus = int(engine.get("gpus", 1))  # the job's GPUs (core/launch.engine_on_job_gpus)
    if engine["kind"] != "vllm":
        return load_engine(
            engine["kind"], str(model_dir), gpus=gpus, max_batch_sequences=int(settings["chunk_size"])
        )
    options: dict[str, Any] = dict(engine.get("vllm") or {})
    options["max_batch_sequences"] = int(settings["vllm_chunk_size"])
    if min_model_len:
        options["max_model_len"] = max(int(options.get("max_model_len", 0)), int(min_model_len))
    return load_engine("vllm", str(model_dir), gpus=gpus, **options)


def close_engine(engine: Any) -> None:
    if hasattr(engine, "close"):
        engine.close()
