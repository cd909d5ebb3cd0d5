"""The "Reproduction" section of RESULTS.md: the first study's own method on its
answers, beside this workflow's statistics on the same answers.

Reads every judge run of the import, the answers the statistics analysed and their
tables; writes results/final/tables/reproduction.md, the lines it adds to the findings
(reproduction_findings.md) and its tables as TSV (first_study.outputs.FILES).
"""

import logging
from typing import Any

from workflow_scripts.core.io_utils import read_parquet, write_text_atomic
from workflow_scripts.core.job import start_job
from workflow_scripts.first_study.outputs import FILES, STATISTICS_TABLES
from workflow_scripts.first_study.reproduction import reproduce, write_tsv
from workflow_scripts.stats.settings import settings_from_dict
from workflow_scripts.stats.tables import read_table

log = logging.getLogger(__name__)


def main(smk: Any) -> None:
    start_job(smk)
    params = smk.params.settings
    runs = read_parquet(smk.input.runs)
    answers = read_parquet(smk.input.answers)
    tables = {name: read_table(smk.input[name]) for name in STATISTICS_TABLES}
    result = reproduce(
        runs,
        answers,
        tables,
        settings_from_dict(params["statistics"]),
        policy=params["policy"],
        default_dataset=params["default_dataset"],
        effect_personas=params.get("persona_effect_personas"),
    )
    for name in FILES:
        write_tsv(result.tables[name], smk.output[name])
    write_text_atomic(smk.output.report, result.markdown)
    write_text_atomic(smk.output.findings, "".join(f"{line}\n" for line in result.findings))
    log.info("reproduction of %d judged answers written to %s", runs.height, smk.output.report)


if "snakemake" in globals():
    main(snakemake)
