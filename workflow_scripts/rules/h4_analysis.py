"""Rule h4_analysis: the H4 tables (directions, transfer geometry, steering, ablation,
the tests) and figures (workflow_scripts.h4.tables)."""

from workflow_scripts.core.job import start_job
from workflow_scripts.h4.outputs import TABLES
from workflow_scripts.h4.tables import analysis_from_files


def main(smk) -> None:
    start_job(smk)
    analysis_from_files(
        list(smk.input.vectors),
        list(smk.input.summaries),
        list(smk.input.steered),
        list(smk.input.ablated),
        dict(smk.params.order),
        dict(smk.params.settings),
        smk.params.layer,
        {name: smk.output[name] for name in TABLES},
        {"h4_geometry": smk.output.geometry_figure, "h4_steering": smk.output.steering_figure},
        int(smk.params.dpi),
    )


if "snakemake" in globals():
    main(snakemake)
