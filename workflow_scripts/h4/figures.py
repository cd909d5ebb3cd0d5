"""H4 figures: the transfer heatmap (cosine of directions at one layer) and the
susceptibility curves (misaligned share vs steering scale per persona). A figure
without data says so in its panel instead of failing."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
from plotnine import (
    aes,
    element_text,
    facet_wrap,
    geom_line,
    geom_point,
    geom_text,
    geom_tile,
    ggplot,
    labs,
    scale_fill_gradient2,
    theme,
    theme_bw,
)

from workflow_scripts.stats.plots import no_data_plot, save_png


def geometry_heatmap(geometry: pl.DataFrame, layer_by_model: dict[str, int], out: Path, dpi: int) -> None:
    """Cosine of every pair of directions at each model's steering layer."""
    title = "H4: cosine of EM directions (steering layer)"
    rows = []
    for r in geometry.to_dicts():
        if r["layer"] != layer_by_model.get(r["model"]):
            continue
        a = f"{r['a_persona']}/{r['a_dataset']}/s{r['a_seed']}"
        b = f"{r['b_persona']}/{r['b_dataset']}/s{r['b_seed']}"
        for x, y in {(a, b), (b, a)}:
            rows.append({"model": f"{r['model']} (layer {r['layer']})", "x": x, "y": y, "cosine": r["cosine"]})
    if not rows:
        save_png(no_data_plot(title, "no direction could be extracted (too few misaligned answers)"), out, 6.5, 3, dpi)
        return
    df = pd.DataFrame(rows)
    n = df["x"].nunique()
    plot = (
        ggplot(df, aes("x", "y", fill="cosine"))
        + geom_tile()
        + geom_text(aes(label="cosine"), format_string="{:.2f}", size=7)
        + scale_fill_gradient2(limits=(-1, 1), low="#2166ac", mid="#f7f7f7", high="#b2182b")
        + facet_wrap("model", scales="free")
        + labs(title=title, x="", y="")
        + theme_bw()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    size = min(16.0, 3.0 + 0.6 * n)
    save_png(plot, out, size, size, dpi)


def steering_curves(steering: pl.DataFrame, out: Path, dpi: int) -> None:
    """Misaligned share (among coherent answers) vs scale, one line per persona."""
    title = "H4: misaligned share vs steering scale (reference persona's EM direction)"
    df = steering.filter(pl.col("misaligned_share").is_not_null()).to_pandas()
    if df.empty:
        save_png(no_data_plot(title, "no steered answers (no reference direction, or no coherent answers)"), out, 6.5, 3, dpi)
        return
    df["panel"] = df["model"] + " / " + df["dataset"]
    plot = (
        ggplot(df, aes("scale", "misaligned_share", colour="persona"))
        + geom_line()
        + geom_point(aes(size="mean_coherent"))
        + facet_wrap("panel")
        + labs(title=title, x="scale", y="misaligned share among coherent answers (%)", size="mean coherence")
        + theme_bw()
    )
    save_png(plot, out, 8.0, 5.0, dpi)
