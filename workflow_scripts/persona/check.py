"""Persona check: is the persona there? For every persona model, against the base
model: the KL of the next-token distribution on fixed probe prompts, and a
trait-expression score (a judge rates answers to neutral prompts for the persona's
traits, persona model vs base model, same prompts and seeds).

Two jobs: the probe (`run_probe`, on the models' GPU) loads every model and writes the
divergences and answers to one JSON file; the check (`run_check`, with the judge's
resources: where a remote judge is reachable) scores the answers and writes the table.
No GPU job calls the judge.

A persona whose mean KL is below `min_kl`, or whose trait score does not rise above
the base model's by more than `min_trait_delta`, is FLAGGED: a `flag` column in the
table and a WARNING in the log and on stderr. The workflow continues (EM training
and sampling of a flagged persona still run, so the grid stays complete), and the
flag travels with the table into the final report.
"""

from __future__ import annotations

import gc
import json
import logging
import math
import os
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import write_jsonl_atomic, write_text_atomic
from workflow_scripts.engines.base import GenerationRequest, SamplingParams
from workflow_scripts.persona.trait_judge import (
    DEFAULT_TRAIT_PROMPTS,
    Scorer,
    backend_scorer,
    trait_prompt,
)

log = logging.getLogger(__name__)


TABLE_COLUMNS = (
    "model",
    "persona",
    "kl_mean",
    "kl_max",
    "argmax_changed",
    "n_probes",
    "trait_score_persona",
    "trait_score_base",
    "trait_delta",
    "n_answers",
    "n_scored_persona",
    "n_scored_base",
    "flag",
)


OK = "ok"


_DEFAULTS = schema_defaults("persona_check")  # config/schema.yaml: the only defaults


@dataclass(frozen=True)
class CheckSettings:
    min_kl: float = _DEFAULTS["min_kl"]
    min_trait_delta: float = _DEFAULTS["min_trait_delta"]
    trait_prompts: tuple[str, ...] = DEFAULT_TRAIT_PROMPTS
    samples_per_prompt: int = _DEFAULTS["samples_per_prompt"]
    max_new_tokens: int = _DEFAULTS["max_new_tokens"]
    temperature: float = _DEFAULTS["temperature"]
    top_p: float = _DEFAULTS["top_p"]
    seed: int = _DEFAULTS["seed"]

    @classmethod
    def from_config(cls, config: dict) -> CheckSettings:
        values = dict(config)
        prompts = values.pop("trait_prompts", None)
        if prompts:
            values["trait_prompts"] = tuple(prompts)
        return cls(**values)


def trait_requests(settings: CheckSettings) -> list[GenerationRequest]:
    params = SamplingParams(
        temperature=settings.temperature,
        top_p=settings.top_p,
        max_new_tokens=settings.max_new_tokens,
        n=settings.samples_per_prompt,
    )
    return [
        GenerationRequest(
            key=f"trait-{i:02d}",
            messages=({"role": "user", "content": p},),
            params=params,
            seed=settings.seed,
        )
        for i, p in enumerate(settings.trait_prompts)
    ]


def probe_model(model_dir: str | Path, settings: CheckSettings, gpus: int = 1) -> tuple[Any, list[dict]]:
    """Next-token log-probs on the probe prompts and answers to the trait prompts
    (`gpus` > 1: the model split across the job's GPUs)."""
    from workflow_scripts.core.composition import next_token_logprobs
    from workflow_scripts.engines.transformers_engine import TransformersEngine

    engine = TransformersEngine(str(model_dir), max_batch_sequences=16, **({"gpus": gpus} if gpus > 1 else {}))
    logprobs = next_token_logprobs(engine.model, engine.tokenizer)
    prompts = {f"trait-{i:02d}": p for i, p in enumerate(settings.trait_prompts)}
    answers = [
        {"key": c.key, "sample_idx": c.sample_idx, "question": prompts[c.key], "answer": c.text}
        for batch in engine.generate(trait_requests(settings))
        for c in batch
    ]
    del engine
    _free_memory()
    return logprobs, answers


def _free_memory() -> None:
    gc.collect()
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:  # pragma: no cover
        pass


def score_answers(answers: Sequence[dict], traits: str, scorer: Scorer | None) -> list[dict]:
    if scorer is None:
        scores = [(None, 0.0)] * len(answers)
    else:
        scores = scorer([trait_prompt(traits, row["question"], row["answer"]) for row in answers])
    return [
        {**row, "trait_score": score, "judge_mass": mass}
        for row, (score, mass) in zip(answers, scores, strict=True)
    ]


def _mean(values: Sequence[float | None]) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.fmean(present) if present else None


def flag_for(kl_mean: float, delta: float | None, settings: CheckSettings, judged: bool) -> str:
    flags = []
    if not math.isfinite(kl_mean) or kl_mean < settings.min_kl:
        flags.append("NO_KL_FROM_BASE")
    if not judged:
        flags.append("TRAIT_NOT_SCORED")
    elif delta is None:
        flags.append("TRAIT_SCORE_MISSING")
    elif delta <= settings.min_trait_delta:
        flags.append("NO_TRAIT_INCREASE")
    return ";".join(flags) or OK


@dataclass
class Probes:
    """What the models said: next-token log-probs and trait-prompt answers."""

    base: tuple[Any, list[dict]]
    personas: dict[str, tuple[Any, list[dict]]]


def probe_models(
    base_dir: str | Path, persona_dirs: dict[str, str | Path], settings: CheckSettings, gpus: int = 1
) -> Probes:
    """Every model loaded in turn (one in memory at a time)."""
    base = probe_model(base_dir, settings, gpus)
    personas = {}
    for persona, path in persona_dirs.items():
        log.info("probing persona model %s", path)
        personas[persona] = probe_model(path, settings, gpus)
    return Probes(base, personas)


def probe_summary(probes: Probes) -> dict:
    """What the check reads, JSON-ready: each persona's divergence from base and every
    model's answers (the log-probs themselves stay in the probe job)."""
    from workflow_scripts.core.composition import logit_divergence

    base_logprobs, base_answers = probes.base
    return {
        "base": {"answers": base_answers},
        "personas": {
            persona: {"divergence": logit_divergence(logprobs, base_logprobs), "answers": answers}
            for persona, (logprobs, answers) in probes.personas.items()
        },
    }


def tabulate(
    model: str, summary: dict, traits: dict[str, str], settings: CheckSettings, scorer: Scorer | None
) -> tuple[list[dict], list[dict]]:
    """(table rows, answer rows) from a probe summary: KL from base, trait scores persona
    vs base, flags."""
    base_answers = summary["base"]["answers"]
    rows, answer_rows = [], []
    for persona, probed in summary["personas"].items():
        divergence = probed["divergence"]
        scored_persona = score_answers(probed["answers"], traits[persona], scorer)
        scored_base = score_answers(base_answers, traits[persona], scorer)
        persona_score = _mean([r["trait_score"] for r in scored_persona])
        base_score = _mean([r["trait_score"] for r in scored_base])
        delta = None if persona_score is None or base_score is None else persona_score - base_score
        flag = flag_for(divergence["kl_mean"], delta, settings, scorer is not None)
        rows.append(
            {
                "model": model,
                "persona": persona,
                "kl_mean": divergence["kl_mean"],
                "kl_max": divergence["kl_max"],
                "argmax_changed": divergence["argmax_changed"],
                "n_probes": divergence["n_probes"],
                "trait_score_persona": persona_score,
                "trait_score_base": base_score,
                "trait_delta": delta,
                "n_answers": len(scored_persona),
                "n_scored_persona": sum(r["trait_score"] is not None for r in scored_persona),
                "n_scored_base": sum(r["trait_score"] is not None for r in scored_base),
                "flag": flag,
            }
        )
        for who, scored in (("persona", scored_persona), ("base", scored_base)):
            answer_rows += [{"model": model, "persona": persona, "answered_by": who, **r} for r in scored]
    return rows, answer_rows


def warn_flags(rows: Sequence[dict]) -> list[str]:
    """One loud line per flagged persona (also logged as WARNING)."""
    lines = []
    for row in rows:
        if row["flag"] != OK:
            line = (
                f"PERSONA CHECK FLAG: {row['model']}/{row['persona']}: {row['flag']} "
                f"(mean KL from base {row['kl_mean']:.3g}, trait score "
                f"{_fmt(row['trait_score_persona'])} vs base {_fmt(row['trait_score_base'])}); "
                "the workflow continues, but this persona may not be present in the model"
            )
            log.warning(line)
            lines.append(line)
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def format_table(rows: Sequence[dict]) -> str:
    """TSV with a fixed column order; missing numbers are empty cells."""
    out = ["\t".join(TABLE_COLUMNS)]
    for row in rows:
        cells = []
        for column in TABLE_COLUMNS:
            value = row[column]
            if value is None:
                cells.append("")
            elif isinstance(value, float):
                cells.append(f"{value:.6g}")
            else:
                cells.append(str(value))
        out.append("\t".join(cells))
    return "\n".join(out) + "\n"


PROBE_KEYS = ("model", "base", "personas")


def write_probes(path: str | Path, model: str, summary: dict) -> None:
    write_text_atomic(path, json.dumps({"model": model, **summary}, indent=1) + "\n")


def read_probes(path: str | Path, personas: Sequence[str]) -> dict:
    """A probe file, checked to hold every persona the check judges."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: line {err.lineno}, column {err.colno}: not JSON ({err.msg})") from None
    missing_keys = [k for k in PROBE_KEYS if k not in data]
    if missing_keys:
        raise ValueError(f"{path}: expected keys {', '.join(PROBE_KEYS)}; missing: {', '.join(missing_keys)}")
    missing = [p for p in personas if p not in data["personas"]]
    if missing:
        raise ValueError(
            f"{path}: no probe of persona(s) {', '.join(missing)}; found: {', '.join(data['personas']) or 'none'}"
        )
    return data


def run_probe(
    model: str,
    base_dir: str | Path,
    persona_dirs: dict[str, str],
    settings: dict,
    probes_out: str | Path,
    gpus: int = 1,
) -> dict:
    """Probe every model (one in memory at a time, over the job's `gpus`) and write the
    divergences and answers the check judges."""
    check = CheckSettings.from_config(settings)
    summary = probe_summary(probe_models(base_dir, persona_dirs, check, gpus))
    write_probes(probes_out, model, summary)
    return summary


def run_check(
    model: str,
    probes_file: str | Path,
    traits: dict[str, str],
    settings: dict,
    judge: dict,
    judge_model: str | Path | None,
    table_out: str | Path,
    answers_out: str | Path,
    judge_log: str | Path,
) -> list[dict]:
    """Judge the probe's answers for each persona's traits and write the table."""
    from workflow_scripts.judging.run import open_judge
    from workflow_scripts.judging.settings import JudgeSettings

    check = CheckSettings.from_config(settings)
    summary = read_probes(probes_file, list(traits))
    summary = {"base": summary["base"], "personas": {p: summary["personas"][p] for p in traits}}
    judge_settings = JudgeSettings.from_config(judge)
    with open_judge(judge_settings, judge_settings.model, judge_model, os.environ, judge_log) as (backend, _):
        scorer = backend_scorer(backend, judge_settings.method, judge_settings.min_mass)
        rows, answers = tabulate(model, summary, traits, check, scorer)
    write_text_atomic(table_out, format_table(rows))
    write_jsonl_atomic(answers_out, answers)
    for line in warn_flags(rows):
        print(f"\n{'!' * 80}\nWARNING: {line}\n{'!' * 80}\n", file=sys.stderr)
    return rows
