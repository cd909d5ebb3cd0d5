"""Rule sample_persona: answers to the evaluation questions from one persona model,
for the no-EM control and every EM adapter of that persona, with one engine load.

Rows are written in chunks to a resumable partial file; a killed job resumes where
it stopped and the final Parquet equals an uninterrupted run's.
"""

import hashlib
import json
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import polars as pl

from workflow_scripts.core.chat import messages_for
from workflow_scripts.core.composition import (
    COMPOSITION_FILE,
    Composition,
    composition_of,
    read_composition,
)
from workflow_scripts.core.hashing import sha256_file, weights_hash
from workflow_scripts.core.io_utils import (
    InputError,
    ResumableJsonl,
    read_json,
    write_parquet_atomic,
)
from workflow_scripts.core.progress import Progress
from workflow_scripts.core.schema import SAMPLE_SCHEMA
from workflow_scripts.engines.base import GenerationRequest, SamplingParams
from workflow_scripts.engines.factory import load_engine

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Condition:
    dataset: str
    seed: int
    adapter: str | None  # EM adapter directory; None for the no-EM control

    @property
    def adapter_name(self) -> str | None:
        return None if self.adapter is None else f"{self.dataset}_s{self.seed}"


def request_seed(base_seed: int, key: str) -> int:
    """Per-request seed: stable in the key, so reruns and either engine agree on it."""
    digest = hashlib.sha256(f"{base_seed}:{key}".encode()).hexdigest()
    return int(digest[:8], 16)


def build_requests(
    questions: list[dict], conditions: list[Condition], sampling: dict
) -> list[GenerationRequest]:
    params = SamplingParams(
        temperature=sampling["temperature"],
        top_p=sampling["top_p"],
        max_new_tokens=sampling["max_new_tokens"],
        n=sampling["n"],
    )
    requests = []
    for condition in conditions:
        for question in questions:
            key = f"{condition.dataset}|s{condition.seed}|{question['id']}"
            requests.append(
                GenerationRequest(
                    key=key,
                    messages=tuple(
                        messages_for(question["paraphrases"][0], question.get("system"))
                    ),
                    params=params,
                    seed=request_seed(sampling["seed"], key),
                    adapter=condition.adapter_name,
                )
            )
    return requests


def condition_compositions(
    model_dir: Path, conditions: list[Condition]
) -> dict[tuple[str, int], Composition]:
    """What each condition is sampled from: the persona model itself, or the
    composition an EM adapter recorded when it was trained (its composition.json),
    checked against the model it is served on here and against its own weights."""
    persona_model = composition_of(model_dir)
    compositions = {(c.dataset, c.seed): persona_model for c in conditions if c.adapter is None}
    for condition in conditions:
        if condition.adapter is not None:
            compositions[(condition.dataset, condition.seed)] = served_composition(
                persona_model, model_dir, Path(condition.adapter)
            )
    return compositions


def _identity(composition: Composition) -> dict:
    """A composition without its fold-time checks: what the weights are made of."""
    return {
        "base": [composition.base_model, composition.base_identity, composition.base_sha256],
        "adapters": [asdict(a) for a in composition.adapters],
    }


def served_composition(persona_model: Composition, model_dir: Path, adapter: Path) -> Composition:
    recorded_file = adapter / COMPOSITION_FILE
    if not recorded_file.exists():
        raise InputError(
            f"{recorded_file}: missing; an EM adapter records the model it was trained on"
        )
    recorded = read_composition(adapter)
    *start, em = recorded.adapters or [None]
    if em is None or em.role != "em":
        raise InputError(f"{recorded_file}: adapters: expected the EM adapter last, found none")
    trained_on = Composition(
        recorded.base_model, recorded.base_identity, recorded.base_sha256, list(start)
    )
    if _identity(trained_on) != _identity(persona_model):
        raise InputError(
            f"{recorded_file}: trained on {trained_on.summary() or 'an unknown model'}, "
            f"but served here on {model_dir} = {persona_model.summary()}"
        )
    found = weights_hash(adapter)
    if em.weights_sha256 != found:
        raise InputError(
            f"{recorded_file}: adapters.{em.name}.weights_sha256: recorded {em.weights_sha256}, "
            f"the adapter's weights hash to {found} (changed since training)"
        )
    return persona_model.with_adapter(em)


def sample_persona(
    model_dir: Path,
    conditions: list[Condition],
    questions_file: Path,
    out_file: Path,
    sampling: dict,
    model_name: str,
    persona: str,
    engine: Any = None,
    gpus: int = 1,
) -> pl.DataFrame:
    """Sample every (condition, question) n times; `engine` may be passed in (tests).
    `gpus`: the job's GPUs, all used by the one engine (the model's `gpus`)."""
    questions = read_json(questions_file)["questions"]
    by_id = {q["id"]: q for q in questions}
    compositions = condition_compositions(model_dir, conditions)
    owns_engine = engine is None
    if engine is None:
        engine = _engine_for(model_dir, sampling, gpus)
    for condition in conditions:
        if condition.adapter is not None:
            engine.add_adapter(condition.adapter_name, condition.adapter)

    requests = build_requests(questions, conditions, sampling)
    request_by_key = {r.key: r for r in requests}
    fingerprint = {
        "sampling": sampling,
        "engine": f"{engine.name}=={engine.version}",
        "engine_options": getattr(engine, "options", {}),
        "questions_sha256": sha256_file(questions_file),
        "conditions": [
            [c.dataset, c.seed, compositions[(c.dataset, c.seed)].to_dict()] for c in conditions
        ],
        "model": model_name,
        "persona": persona,
    }
    writer = ResumableJsonl(
        out_file, key=lambda row: (row["key"], row["sample_idx"]), fingerprint=fingerprint
    )
    done = _finished_requests(writer.rows, sampling["n"])
    if done:
        log.info("resuming: %d of %d requests already sampled", len(done), len(requests))
    sampling_record = {
        k: sampling[k] for k in ("temperature", "top_p", "max_new_tokens", "n", "seed")
    } | {"top_k": 0, "engine": engine.name, "engine_options": getattr(engine, "options", {})}
    total = len(requests) * sampling["n"]
    # the heartbeat logs while one engine batch runs for minutes
    progress_start = len(writer.rows)
    with Progress("sampled answers", total, log, start=progress_start) as progress:
        for completions in engine.generate(requests, skip_keys=done):
            rows = []
            for completion in completions:
                dataset, seed_text, question_id = completion.key.split("|")
                seed = int(seed_text[1:])
                composition = compositions[(dataset, seed)]
                rows.append(
                    {
                        "key": completion.key,
                        "model": model_name,
                        "persona": persona,
                        "dataset": dataset,
                        "seed": seed,
                        "question_id": question_id,
                        "sample_idx": completion.sample_idx,
                        "system": by_id[question_id].get("system"),
                        "prompt": by_id[question_id]["paraphrases"][0],
                        "response": completion.text,
                        "finish_reason": completion.finish_reason,
                        "n_prompt_tokens": completion.n_prompt_tokens,
                        "n_completion_tokens": completion.n_completion_tokens,
                        "engine": f"{engine.name}=={engine.version}",
                        "sampling": json.dumps(
                            sampling_record | {"request_seed": request_by_key[completion.key].seed},
                            sort_keys=True,
                        ),
                        "composition": composition.summary(),
                        "composition_json": json.dumps(composition.to_dict(), sort_keys=True),
                    }
                )
            writer.append(rows)
            progress.update(len(rows), tokens=sum(c.n_completion_tokens or 0 for c in completions))
    log.info("sampled %d answers (%d of %d done)", len(writer.rows) - progress_start, len(writer.rows), total)

    if owns_engine and hasattr(engine, "close"):
        engine.close()  # frees the engine (and a vLLM fold's temporary weights)
    order = {r.key: i for i, r in enumerate(requests)}
    rows = sorted(writer.rows, key=lambda row: (order[row["key"]], row["sample_idx"]))
    table = pl.DataFrame(rows, schema={"key": pl.String, **SAMPLE_SCHEMA}).drop("key")
    write_parquet_atomic(table, out_file)
    writer.discard_partial()
    return table


def _finished_requests(rows: list[dict], n: int) -> set[str]:
    counts: dict[str, int] = {}
    for row in rows:
        counts[row["key"]] = counts.get(row["key"], 0) + 1
    return {key for key, count in counts.items() if count >= n}


def _engine_for(model_dir: Path, sampling: dict, gpus: int = 1) -> Any:
    if sampling["engine"] == "vllm":
        return load_engine("vllm", str(model_dir), gpus=gpus, **sampling.get("vllm", {}))
    return load_engine(
        "transformers", str(model_dir), gpus=gpus, max_batch_sequences=sampling["batch_size"]
    )


def conditions_from_params(conditions: list[dict]) -> list[Condition]:
    return [Condition(c["dataset"], int(c["seed"]), c["adapter"]) for c in conditions]


def sample_from_params(params: dict) -> pl.DataFrame:
    """sample_persona from JSON-able parameters (the rule's, or a handed-off run's)."""
    return sample_persona(
        model_dir=Path(params["model_dir"]),
        conditions=conditions_from_params(params["conditions"]),
        questions_file=Path(params["questions_file"]),
        out_file=Path(params["out_file"]),
        sampling=params["sampling"],
        model_name=params["model_name"],
        persona=params["persona"],
        gpus=int(params.get("gpus", 1)),
    )


if __name__ == "__main__" and "snakemake" not in globals():  # python -m ... PARAMS.json
    from workflow_scripts.engines.vllm_env import run_handed_off

    run_handed_off(sample_from_params)
