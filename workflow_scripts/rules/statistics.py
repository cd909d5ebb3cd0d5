"""Every table of the results from the judged answers (rule `statistics`).

One cluster bootstrap (shared by all tables, so differences stay paired by question)
feeds the condition, persona, comparison, hypothesis, medical, dataset and
cross-model tables; see stats_bootstrap, stats_descriptive and stats_tests.
"""

import logging

import polars as pl

from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.settings import settings_from_dict
from workflow_scripts.stats.tables import compute_tables, write_tables


def main(snakemake) -> None:
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
    settings = settings_from_dict(snakemake.params.settings)
    answers = pl.read_parquet(snakemake.input.answers)
    tables = compute_tables(answers, settings, snakemake.params.expected)
    write_tables(tables, {name: snakemake.output[name] for name in TABLES})


if "snakemake" in globals():
    main(snakemake)
