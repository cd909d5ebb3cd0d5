"""The figures of the results (fig1..fig8, dist1..dist6), drawn with plotnine from the
statistics tables (or the judged answers), one PNG each (rule `figure`).

A figure whose data the grid does not have (two models for fig8, the medical pair
for fig5) is drawn as a placeholder that says what it needs, so that every figure
is always a target and `rule all` does not depend on the grid's shape.
"""

import logging

from workflow_scripts.stats.figures import FigureData, draw_figure
from workflow_scripts.stats.outputs import FIGURES
from workflow_scripts.stats.settings import settings_from_dict


def main(snakemake) -> None:
    logging.basicConfig(filename=snakemake.log[0], level=logging.INFO)
    settings = settings_from_dict(snakemake.params.settings)
    paths = {name: snakemake.input[name] for name in FIGURES[snakemake.wildcards.figure]}
    draw_figure(snakemake.wildcards.figure, FigureData(paths, settings), snakemake.output.figure)


if "snakemake" in globals():
    main(snakemake)
