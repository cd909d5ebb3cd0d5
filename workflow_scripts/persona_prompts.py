"""Rule persona_prompts: expand each trait's seed questions into user messages with
the generator model (written in resumable chunks), drop near-duplicates, write
prompts.jsonl and a report of the counts."""

import logging
from pathlib import Path

from workflow_scripts.constitution import parse_constitution
from workflow_scripts.engines.base import GenerationRequest
from workflow_scripts.engines.vllm_env import run_handed_off, run_stage
from workflow_scripts.io_utils import read_jsonl, write_json_atomic, write_jsonl_atomic
from workflow_scripts.persona.generation import (
    close_engine,
    generate_into,
    load_persona_engine,
    open_output,
    sampling_params,
)
from workflow_scripts.persona.prompts import (
    expansion_request,
    extra_prompt_rows,
    generation_rounds,
    select_prompts,
)
from workflow_scripts.persona.runlog import start_job

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
    output = open_output(generations_out)
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


def main(smk) -> None:
    start_job(smk)
    params = {
        "constitution": str(smk.input.constitution),
        "generator_dir": str(smk.input.generator),
        "prompts_out": str(smk.output.prompts),
        "generations_out": str(smk.output.generations),
        "report_out": str(smk.output.report),
        "settings": dict(smk.params.settings),
        "engine": dict(smk.params.engine),
        "extra_prompts": smk.input.get("extra_prompts"),
    }
    run_stage("workflow_scripts.persona_prompts", params, run_from_params, params["engine"]["kind"], smk.log[0])


if __name__ == "__main__" and "snakemake" not in globals():  # a run handed to the vLLM venv
    run_handed_off(run_from_params)

if "snakemake" in globals():
    main(snakemake)
