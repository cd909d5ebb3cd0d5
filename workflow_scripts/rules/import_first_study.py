"""Rule import_first_study: the first study's judge-run files as rows of the analysis
schema, with provenance (workflow_scripts/first_study/importer.py)."""

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
