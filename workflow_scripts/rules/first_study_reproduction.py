"""The "Reproduction" section of RESULTS.md: the first study's method on its own
answers, next to the corrected method, and where the conclusions change.

Reads every judge run of the import (results/imported/first_study_runs.parquet) and
writes results/final/tables/reproduction.md plus its tables as TSV (the persona
table, the per-cell comparison, the persona-effect check, judge reliability).
"""

import logging
from typing import Any

from workflow_scripts.core.io_utils import read_parquet, write_text_atomic
from workflow_scripts.core.job import start_job
from workflow_scripts.first_study.reproduction import reproduce, write_tsv

log = logging.getLogger(__name__)


def main(smk: Any) -> None:
    start_job(smk)
    params = smk.params.settings
    runs = read_parquet(smk.input.runs)
    result = reproduce(
        runs,
        params["statistics"],
        policy=params["policy"],
        default_dataset=params["default_dataset"],
    )
    write_tsv(result.persona_table, smk.output.persona_table)
    write_tsv(result.comparisons, smk.output.comparisons)
    write_tsv(result.persona_effect, smk.output.persona_effect)
    write_tsv(result.reliability, smk.output.reliability)
    write_text_atomic(smk.output.report, result.markdown)
    log.info("reproduction of %d judged answers written to %s", runs.height, smk.output.report)


if "snakemake" in globals():
    main(snakemake)
