"""Rule persona_check: per model, is each persona there? KL of the persona model's
next-token distribution from the base model's on fixed probe prompts, and a
trait-expression score (judge) of answers to neutral prompts, persona vs base.
Flagged personas are warned about loudly; the workflow continues."""

import logging
import sys
from collections.abc import Callable
from pathlib import Path

from workflow_scripts.io_utils import write_jsonl_atomic, write_text_atomic
from workflow_scripts.persona.check import CheckSettings, check_personas, format_table, warn_flags
from workflow_scripts.persona.runlog import start_job
from workflow_scripts.persona.trait_judge import Distribution, LocalJudge, OpenAIJudge

log = logging.getLogger(__name__)


def judge_factory(judge: dict, judge_model: str | Path | None) -> Callable[[], Callable] | None:
    """The configured judge, built only when needed (after the persona models are
    freed). A vLLM-server judge only exists inside the judge job: not available here."""
    kind = judge["kind"]
    if kind == "local":

        def make_local() -> Callable[[list[dict]], Distribution]:
            from workflow_scripts.models import load_model, load_tokenizer

            return LocalJudge(load_model(judge_model), load_tokenizer(judge_model))

        return make_local
    if kind == "openai":
        return lambda: OpenAIJudge(
            judge["model"],
            judge.get("base_url"),
            judge.get("api_key_env"),
            int(judge.get("max_retries", 8)),
            float(judge.get("timeout_s", 60)),
        )
    log.warning("judge kind %r: no trait-expression score in the persona check", kind)
    return None


def run_check(
    model: str,
    base_dir: str | Path,
    persona_dirs: dict[str, str],
    traits: dict[str, str],
    settings: dict,
    judge: dict,
    judge_model: str | Path | None,
    table_out: str | Path,
    answers_out: str | Path,
) -> list[dict]:
    check = CheckSettings.from_config(settings)
    min_mass = check.min_judge_mass
    if min_mass is None:
        min_mass = float(judge.get("min_mass", 0.25))
    rows, answers = check_personas(
        model, base_dir, persona_dirs, traits, check, judge_factory(judge, judge_model), min_mass
    )
    write_text_atomic(table_out, format_table(rows))
    write_jsonl_atomic(answers_out, answers)
    for line in warn_flags(rows):
        print(f"\n{'!' * 80}\nWARNING: {line}\n{'!' * 80}\n", file=sys.stderr)
    return rows


def main(smk) -> None:
    start_job(smk)
    personas = list(smk.params.personas)
    run_check(
        smk.wildcards.model,
        smk.input.base,
        dict(zip(personas, smk.input.personas, strict=True)),
        smk.params.traits,
        smk.params.settings,
        smk.params.judge,
        smk.input.get("judge_model"),
        smk.output.table,
        smk.output.answers,
    )


if "snakemake" in globals():
    main(snakemake)
