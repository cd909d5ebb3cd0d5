"""Import the judged answers of the first, script-based study
(docs/methods.md, Re-analysis of the first study).

One JSON file per judge run (`eval_<persona>[_<dataset>]_gpt41mini_<timestamp>.json`):
top level `persona, dataset, model_id, model_path, response_file, judge_model,
judge_model_short, timestamp, questions, summary`; `questions` is a list of
`{id, question, responses}`, each response `{sample_idx, response, alignment,
coherence}` with `{score: 0..100 | null, raw_response, special}`.

Each file becomes rows of the analysis schema (workflow_scripts.core.schema.ANALYSIS_SCHEMA)
plus provenance columns. The model comes from the file's directory (the files do not
name it), the persona and dataset from the file's fields, never from its name (persona
names contain underscores, so the name is ambiguous).

Conditions judged more than once (same answers, several judge runs) are kept whole
(`all_runs`, each run a judge replicate told apart by `judge_run`) or reduced to the
run with the most scored answers (`largest_run`, what the first study did; ties go to
the earliest run). Every run carries the flag `largest_run` either way.

Also writes the first study's own design (importer.study_design: the conditions it
planned), so that RESULTS.md lists as missing only what that design lacks.
"""

import logging
from typing import Any

from workflow_scripts.core.io_utils import InputError, atomic_path, write_parquet_atomic
from workflow_scripts.core.job import start_job
from workflow_scripts.first_study.importer import (
    ImportSettings,
    import_first_study,
    study_design,
    summary_lines,
)

log = logging.getLogger(__name__)


def main(smk: Any) -> None:
    start_job(smk)
    params = smk.params.settings
    settings = ImportSettings.from_config(
        params["first_study"], personas=params["personas"], datasets=params["datasets"]
    )
    try:
        answers, runs = import_first_study(smk.input.source, settings)
    except InputError as err:
        log.error("%s", err)  # the job's log names the bad file too, not only stderr
        raise
    for line in summary_lines(answers, runs, settings.policy):
        log.info(line)
    write_parquet_atomic(runs, smk.output.runs)
    write_parquet_atomic(answers, smk.output.answers)
    with atomic_path(smk.output.design, suffix=".tsv") as tmp:
        study_design(runs).write_csv(tmp, separator="\t")


if "snakemake" in globals():
    main(snakemake)
