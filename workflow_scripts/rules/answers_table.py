"""All judged answers in one table (rule `answers_table`): the judged Parquet files of
every model x persona x dataset, in the columns of `ANALYSIS_SCHEMA`."""

import logging

from workflow_scripts.core.io_utils import write_parquet_atomic
from workflow_scripts.core.job import start_job
from workflow_scripts.stats.answers import concat_answers

log = logging.getLogger(__name__)


def main(smk) -> None:
    start_job(smk)
    paths = list(smk.input)
    answers = concat_answers(paths)
    write_parquet_atomic(answers, smk.output.answers)
    log.info("%d answers from %d judged files", answers.height, len(paths))


if "snakemake" in globals():
    main(snakemake)
