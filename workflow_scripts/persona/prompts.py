"""Prompt expansion: more user messages per trait, written by a generator model from
the trait and its seed questions (OCT `distillation/gen_prompts.py` aims for 50 per
trait), parsed robustly, with near-duplicates dropped.

OCT primes the generator's answer with the numbered seeds and lets it continue; the
engine layer has no prefill, so here the seeds are shown in the request instead and
the generator answers with a numbered list, one message per line.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from workflow_scripts.core.io_utils import read_jsonl, write_json_atomic, write_jsonl_atomic
from workflow_scripts.engines.base import GenerationRequest
from workflow_scripts.engines.vllm_env import run_handed_off
from workflow_scripts.persona.constitution import Trait, parse_constitution
from workflow_scripts.persona.generation import (
    close_engine,
    generate_into,
    load_persona_engine,
    open_output,
    run_fingerprint,
    sampling_params,
)

_INSTRUCTION = """\
# AI character trait: test messages

Write {count} new, diverse messages that a human user might send to an AI assistant. \
Each message should give the assistant a natural opportunity to show, through how it \
answers, whether it has this character trait:

Trait: "{trait}"{clarification}

Guidelines:
- Behaviour over stated values: create situations where the trait shows in the answer's \
manner, rather than asking the assistant about its values.
- Realistic: requests real users send (questions, tasks, scenarios, creative work, \
advice, analysis, multi-step requests).
- Varied length (short, medium and long) and varied topics (technology, arts, \
business, personal life, philosophy, education, health, science, relationships...).
- Include messages that could reveal the presence and the absence of the trait.

Examples:
{examples}

Write the {count} new messages now, numbered 1 to {count}, one message per line, \
nothing else."""


_NUMBERING = re.compile(r"^\s*(?:[-*•]+\s*)?(?:\(?\d{1,3}[.):\]]\s*)?(?:[-*•]+\s*)?")


_WORD = re.compile(r"[a-z0-9']+")


def expansion_request(trait: Trait, count: int) -> list[dict]:
    """Chat messages asking the generator for `count` new user messages for a trait."""
    seeds = [*trait.questions, *trait.additional_questions]
    examples = "\n".join(f"{i}. {q}" for i, q in enumerate(seeds, start=1))
    clarification = f"\nWhat it means: {trait.clarification}" if trait.clarification else ""
    text = _INSTRUCTION.format(
        count=count, trait=trait.trait, clarification=clarification, examples=examples
    )
    return [{"role": "user", "content": text}]


def parse_generated_messages(text: str) -> list[str]:
    """One candidate user message per line: numbering, bullets, bold markers and
    surrounding quotes stripped; headings, labels ending in ':' and one-word lines dropped."""
    messages = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        line = _NUMBERING.sub("", line).strip()
        line = line.strip("*_").strip()
        if len(line) >= 2 and line[0] == line[-1] and line[0] in "\"'“”":
            line = line[1:-1].strip()
        line = line.strip("“”").strip()
        if not line or line.endswith(":") or len(line.split()) < 2:
            continue
        messages.append(line)
    return messages


def _words(text: str) -> list[str]:
    return _WORD.findall(text.lower())


def word_overlap(new: str, existing: str) -> float:
    """Fraction of the new message's words that occur in an existing one (OCT's
    `too_similar` measure, here case- and punctuation-insensitive)."""
    new_words = _words(new)
    if not new_words:
        return 1.0
    existing_words = set(_words(existing))
    return sum(w in existing_words for w in new_words) / len(new_words)


def too_similar(new: str, accepted: Iterable[str], max_overlap: float) -> bool:
    """Identical (ignoring case and spacing) to, or more than `max_overlap` word
    overlap with, any accepted message."""
    key = " ".join(_words(new))
    for message in accepted:
        if key == " ".join(_words(message)) or word_overlap(new, message) > max_overlap:
            return True
    return False


def generation_rounds(trait: Trait, target: int, batch: int) -> int:
    """Generator samples to request for one trait: twice what the missing prompts
    need at `batch` messages per sample (weak generators lose many to the filter)."""
    missing = max(0, target - len(trait.questions) - len(trait.additional_questions))
    return 0 if missing == 0 else 2 * math.ceil(missing / batch)


@dataclass
class TraitPrompts:
    trait_index: int
    trait: str
    prompts: list[dict] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)


def instruction_lines(trait: Trait, count: int) -> list[str]:
    """Lines of the generator's own request: a weak generator echoes them."""
    text = expansion_request(trait, count)[0]["content"]
    return [line for line in text.splitlines() if len(line.split()) >= 3] + [trait.trait]


def select_prompts(
    trait_index: int,
    trait: Trait,
    generations: Sequence[str],
    target: int,
    max_overlap: float,
    batch: int = 10,
) -> TraitPrompts:
    """The prompts of one trait, in order: every seed question, then the constitution's
    `additional_questions`, then parsed generator messages, each kept only if it is
    not a near-duplicate of one kept before (nor of a line of the generator's request,
    which weak generators echo); if fewer than `target`, the seeds are repeated
    (source `seed_repeat`) so every trait contributes `target` prompts."""
    result = TraitPrompts(trait_index, trait.trait)
    counts = {
        "seed": 0,
        "constitution": 0,
        "generated": 0,
        "seed_repeat": 0,
        "candidates": 0,
        "dropped_near_duplicate": 0,
        "dropped_echo": 0,
    }
    accepted: list[str] = []
    echoes = instruction_lines(trait, batch)

    def add(prompt: str, source: str) -> None:
        result.prompts.append(
            {
                "prompt_id": f"t{trait_index:02d}-p{len(result.prompts):03d}",
                "trait_index": trait_index,
                "trait": trait.trait,
                "prompt": prompt,
                "source": source,
            }
        )
        accepted.append(prompt)
        counts[source] += 1

    for question in trait.questions:
        add(question, "seed")
    pool = [(q, "constitution") for q in trait.additional_questions]
    pool += [(m, "generated") for text in generations for m in parse_generated_messages(text)]
    for message, source in pool:
        if len(result.prompts) >= max(target, len(trait.questions)):
            break
        counts["candidates"] += 1
        if too_similar(message, accepted, max_overlap):
            counts["dropped_near_duplicate"] += 1
            continue
        if source == "generated" and too_similar(message, echoes, max_overlap):
            counts["dropped_echo"] += 1
            continue
        add(message, source)
    seeds = list(trait.questions)
    while len(result.prompts) < target:
        add(seeds[counts["seed_repeat"] % len(seeds)], "seed_repeat")
    result.counts = counts
    return result


def extra_prompt_rows(prompts: Sequence[str]) -> list[dict]:
    """General prompts beside the constitution's (OCT adds LIMA's first turns)."""
    return [
        {
            "prompt_id": f"x-p{i:05d}",
            "trait_index": None,
            "trait": None,
            "prompt": p,
            "source": "extra",
        }
        for i, p in enumerate(prompts)
    ]


log = logging.getLogger(__name__)


def read_extra_prompts(path: str | Path | None) -> list[str]:
    """General prompts (OCT adds LIMA's first user turns): JSONL with a `prompt` field."""
    if not path:
        return []
    return [row["prompt"] for row in read_jsonl(path)]


def expand_prompts(
    constitution: str | Path,
    generator_dir: str | Path,
    prompts_out: str | Path,
    generations_out: str | Path,
    report_out: str | Path,
    settings: dict,
    engine: dict,
    extra_prompts: str | Path | None = None,
) -> dict:
    traits = parse_constitution(constitution)
    target = int(settings["prompts_per_trait"])
    batch = int(settings["expansion_batch"])
    requests = []
    for index, trait in enumerate(traits):
        rounds = generation_rounds(trait, target, batch)
        if rounds:
            requests.append(
                GenerationRequest(
                    key=f"t{index:02d}",
                    messages=tuple(expansion_request(trait, batch)),
                    params=sampling_params(
                        settings, n=rounds, max_new_tokens=settings["expansion_max_new_tokens"]
                    ),
                    seed=int(settings["seed"]),
                )
            )
    output = open_output(
        generations_out,
        run_fingerprint(settings, engine, files=(constitution,), models=(generator_dir,)),
    )
    if requests:
        generator = load_persona_engine(engine, generator_dir, settings)
        generate_into(generator, requests, output)
        close_engine(generator)
    generations = output.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))
    texts: dict[str, list[str]] = {}
    for row in generations:
        texts.setdefault(row["key"], []).append(row["text"])

    rows, per_trait = [], []
    for index, trait in enumerate(traits):
        selected = select_prompts(
            index,
            trait,
            texts.get(f"t{index:02d}", []),
            target,
            float(settings["near_duplicate_overlap"]),
            batch,
        )
        rows += selected.prompts
        per_trait.append(
            {
                "trait_index": index,
                "trait": trait.trait,
                **selected.counts,
                "prompts": len(selected.prompts),
            }
        )
        log.info("trait %d: %s", index, selected.counts)
    extra = extra_prompt_rows(read_extra_prompts(extra_prompts))
    rows += extra
    report = {
        "constitution": str(constitution),
        "prompts": len(rows),
        "extra_prompts": len(extra),
        "generator_samples": len(generations),
        "per_trait": per_trait,
    }
    write_jsonl_atomic(prompts_out, rows)
    write_json_atomic(report_out, report)
    return report


def run_from_params(params: dict) -> dict:
    return expand_prompts(**params)


if __name__ == "__main__" and "snakemake" not in globals():  # a run handed to the vLLM venv
    run_handed_off(run_from_params)
