"""Rule persona_check: per model, is each persona there? KL of the persona model's
next-token distribution from the base model's on fixed probe prompts, and a
trait-expression score (the configured judge) of answers to neutral prompts,
persona vs base. Flagged personas are warned about loudly; the workflow continues."""

import logging
import os
import sys
from pathlib import Path

from workflow_scripts.io_utils import write_jsonl_atomic, write_text_atomic
from workflow_scripts.persona.check import (
    CheckSettings,
    format_table,
    probe_models,
    tabulate,
    warn_flags,
)
from workflow_scripts.persona.runlog import start_job
from workflow_scripts.persona.trait_judge import backend_scorer

log = logging.getLogger(__name__)


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
    judge_log: str | Path,
) -> list[dict]:
    """Probe every model first (one in memory at a time), then start the judge."""
    from workflow_scripts.judging.run import open_judge
    from workflow_scripts.judging.settings import JudgeSettings

    check = CheckSettings.from_config(settings)
    probes = probe_models(base_dir, persona_dirs, check)
    judge_settings = JudgeSettings.from_config(judge)
    with open_judge(judge_settings, judge_settings.model, judge_model, os.environ, judge_log) as (backend, _):
        scorer = backend_scorer(backend, judge_settings.method, judge_settings.min_mass)
        rows, answers = tabulate(model, probes, traits, check, scorer)
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
        smk.log[0],
    )


if "snakemake" in globals():
    main(snakemake)
