"""Every table of the results from the judged answers (rule `statistics`).

The persona checks (results/{model}/persona_check.tsv, where the grid has them) gate
the verdicts: a persona found not expressed gets none. See stats.tables.
"""

import polars as pl

from workflow_scripts.core.io_utils import read_parquet
from workflow_scripts.core.job import start_job
from workflow_scripts.stats.outputs import TABLES
from workflow_scripts.stats.settings import settings_from_dict
from workflow_scripts.stats.tables import compute_tables, read_persona_check, write_tables


def main(smk) -> None:
    start_job(smk)
    settings = settings_from_dict(smk.params.settings)
    answers = read_parquet(smk.input.answers)
    checks = [read_persona_check(path) for path in smk.input.persona_check]
    persona_check = pl.concat(checks, how="vertical_relaxed") if checks else None
    expected, grid = smk.params.expected, None
    design = getattr(smk.input, "design", None)
    if design:  # an import: its own design is what is expected; the grid is context
        planned = pl.read_csv(design, separator="\t")
        expected, grid = planned.select("model", "persona", "dataset").to_dicts(), expected
    tables = compute_tables(answers, settings, expected, persona_check, grid)
    write_tables(tables, {name: smk.output[name] for name in TABLES})


if "snakemake" in globals():
    main(snakemake)
