"""Every table of the results from the judged answers (rule `statistics`).

One cluster bootstrap (shared by all tables, so differences stay paired by question)
feeds the condition, persona, comparison, hypothesis, medical, dataset and
cross-model tables; see stats/bootstrap.py, stats/descriptive.py and stats/comparisons.py.
"""


import polars as pl

from workflow_scripts.core.job import start_job
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.settings import settings_from_dict
from workflow_scripts.stats.tables import compute_tables, write_tables


def main(smk) -> None:
    start_job(smk)
    settings = settings_from_dict(smk.params.settings)
    answers = pl.read_parquet(smk.input.answers)
    tables = compute_tables(answers, settings, smk.params.expected)
    write_tables(tables, {name: smk.output[name] for name in TABLES})


if "snakemake" in globals():
    main(snakemake)
