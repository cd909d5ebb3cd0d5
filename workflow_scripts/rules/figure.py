"""The figures of the results (fig1..fig8, dist1..dist6), drawn with plotnine from the
statistics tables (or the judged answers), one PNG each (rule `figure`).

A figure whose data the grid does not have (two models for fig8, the medical pair
for fig5) is drawn as a placeholder that says what it needs, so that every figure
is always a target and `rule all` does not depend on the grid's shape.
"""

from workflow_scripts.core.job import start_job
from workflow_scripts.stats.figures import FigureData, draw_figure
from workflow_scripts.stats.outputs import FIGURES
from workflow_scripts.stats.settings import settings_from_dict


def main(smk) -> None:
    start_job(smk)
    settings = settings_from_dict(smk.params.settings)
    paths = {name: smk.input[name] for name in FIGURES[smk.wildcards.figure]}
    draw_figure(smk.wildcards.figure, FigureData(paths, settings), smk.output.figure)


if "snakemake" in globals():
    main(snakemake)
