"""Rule `judge_robustness`: the verdicts of every hypothesis recomputed with each
secondary judge on the answers it scored (workflow_scripts.stats.robustness)."""

import logging

import polars as pl

from workflow_scripts.core.io_utils import atomic_path, read_parquet
from workflow_scripts.core.job import start_job
from workflow_scripts.stats.answers import concat_answers
from workflow_scripts.stats.robustness import hypothesis_verdicts, on_answers_of, robustness_table
from workflow_scripts.stats.settings import settings_from_dict
from workflow_scripts.stats.tables import read_persona_check, read_table

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    settings = settings_from_dict(smk.params.settings)
    checks = [read_persona_check(path) for path in smk.input.persona_check]
    persona_check = pl.concat(checks, how="vertical_relaxed") if checks else None
    answers = read_parquet(smk.input.answers)
    by_judge = {}
    for judge, files in smk.params.judges.items():
        secondary = concat_answers(files)
        on_subsample = hypothesis_verdicts(on_answers_of(answers, secondary), settings, persona_check)
        by_judge[judge] = (on_subsample, hypothesis_verdicts(secondary, settings, persona_check), secondary.height)
        log.info("%s: %d answers; verdicts recomputed", judge, secondary.height)
    table = robustness_table(read_table(smk.input.hypotheses), by_judge)
    with atomic_path(smk.output.robustness, suffix=".csv") as tmp:
        table.write_csv(tmp)


if "snakemake" in globals():
    main(snakemake)
