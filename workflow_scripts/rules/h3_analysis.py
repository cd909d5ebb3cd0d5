"""Rule h3_analysis: the H3 tables (curves, mechanistic curves, transitions, tests) and
figures (workflow_scripts.h3.run)."""

from workflow_scripts.core.job import start_job
from workflow_scripts.h3.outputs import TABLES
from workflow_scripts.h3.run import analysis_from_files


def main(smk) -> None:
    start_job(smk)
    keys = dict(smk.params.order)
    analysis_from_files(
        list(smk.input.judged),
        keys["judged"],
        list(smk.input.curves),
        list(smk.input.summaries),
        keys["runs"],
        dict(smk.params.settings),
        {name: smk.output[name] for name in TABLES},
        {"h3_curves": smk.output.curves_figure, "h3_transitions": smk.output.transitions_figure},
        int(smk.params.dpi),
    )


if "snakemake" in globals():
    main(snakemake)
