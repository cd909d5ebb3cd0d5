"""Saving a plotnine figure as a PNG, and the panel a figure without data shows: shared
by the study's figures and those of H3, H4 and the self-knowledge battery."""

from __future__ import annotations

import warnings
from pathlib import Path

from plotnine import annotate, ggplot, labs, theme_void

from workflow_scripts.core.io_utils import atomic_path


def save_png(plot, out: str | Path, width: float, height: float, dpi: int) -> None:
    """`plot` written atomically to the PNG `out` (inches, dpi)."""
    with atomic_path(out, suffix=".png") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotnine's notes on saving and dropped rows
        plot.save(tmp, format="png", width=width, height=height, dpi=dpi, verbose=False)


def no_data_plot(title: str, why: str):
    """A figure that says it has no data, and why."""
    return ggplot() + annotate("text", x=0, y=0, label=f"no data: {why}", size=9) + theme_void() + labs(title=title)
