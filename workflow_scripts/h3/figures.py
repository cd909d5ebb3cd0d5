"""H3 figures: curves in small multiples (persona x EM dataset; the misaligned share
over training above the whole adapter's rotation, 1 - local cosine) and a forest of
transition steps with their intervals. A figure without data says so in its panel."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
from plotnine import (
    aes,
    facet_grid,
    geom_errorbarh,
    geom_line,
    geom_point,
    geom_ribbon,
    ggplot,
    labs,
    scale_x_log10,
    theme_bw,
)

from workflow_scripts.h3.outputs import WHOLE_ADAPTER as ALL
from workflow_scripts.stats.plots import no_data_plot, save_png


def curve_panels(curves: pl.DataFrame, mechanistic: pl.DataFrame, out: Path, dpi: int) -> None:
    """Rows: persona; columns: model / dataset; in each panel the pooled misaligned share
    (with its interval) and, below it on the same step axis, the rotation of each seed's
    adapter (points of %: 100 x (1 - local cosine))."""
    title = "H3: misaligned share (top) and adapter rotation (bottom) over EM training"
    behaviour = curves.filter(pl.col("seed").is_null() & pl.col("misaligned_share").is_not_null())
    rotation = mechanistic.filter((pl.col("module") == ALL) & pl.col("local_cos").is_not_null())
    if behaviour.height == 0 and rotation.height == 0:
        save_png(no_data_plot(title, "no judged checkpoint answers and no checkpoints"), out, 6.5, 3, dpi)
        return
    frames = []
    if behaviour.height:
        b = behaviour.select("model", "persona", "dataset", "step", pl.col("misaligned_share").alias("value"),
                             "low", "high").with_columns(pl.lit("misaligned %").alias("curve"),
                                                         pl.lit("pooled").alias("run"))
        frames.append(b.to_pandas())
    if rotation.height:
        r = rotation.select("model", "persona", "dataset", "step",
                            (100.0 * (1.0 - pl.col("local_cos"))).alias("value"),
                            pl.lit(None, pl.Float64).alias("low"), pl.lit(None, pl.Float64).alias("high"),
                            pl.lit("rotation %").alias("curve"),
                            pl.format("s{}", pl.col("seed")).alias("run"))
        frames.append(r.to_pandas())
    df = pd.concat(frames, ignore_index=True)
    df["column"] = df["model"] + " / " + df["dataset"]
    df["row"] = df["persona"] + ": " + df["curve"]
    ribbon = df.dropna(subset=["low", "high"])
    plot = ggplot(df, aes("step", "value", group="run", colour="curve")) + geom_line() + geom_point(size=1)
    if not ribbon.empty:
        plot = plot + geom_ribbon(aes(ymin="low", ymax="high"), data=ribbon, alpha=0.2, colour="none", fill="grey")
    plot = (plot + facet_grid("row ~ column", scales="free_y") + scale_x_log10()
            + labs(title=title, x="training step (log)", y="", colour="") + theme_bw())
    rows, cols = df["row"].nunique(), df["column"].nunique()
    save_png(plot, out, min(20.0, max(7.0, 2.5 + 3.0 * cols)), min(30.0, 1.5 + 1.6 * rows), dpi)


def transition_forest(transitions: pl.DataFrame, out: Path, dpi: int) -> None:
    """Transition step (pooled over seeds) with its interval per persona, one panel per
    model / dataset; personas without a transition are listed in the caption."""
    title = "H3: transition step of EM (misaligned share, logistic midpoint)"
    pooled = transitions.filter(pl.col("seed").is_null())
    found = pooled.filter(pl.col("step").is_not_null())
    none = pooled.filter(pl.col("step").is_null())
    if found.height == 0:
        listed = ", ".join(f"{r['persona']}/{r['dataset']}" for r in none.to_dicts()) or "no curves"
        save_png(no_data_plot(title, f"no transition within training ({listed})"), out, 7.0, 3, dpi)
        return
    df = found.to_pandas()
    df["panel"] = df["model"] + " / " + df["dataset"]
    df["low"] = df["low"].fillna(df["step"])
    df["high"] = df["high"].fillna(df["step"])
    caption = ("no transition: " + ", ".join(f"{r['persona']}/{r['dataset']}" for r in none.to_dicts())
               if none.height else "")
    plot = (ggplot(df, aes("step", "persona")) + geom_errorbarh(aes(xmin="low", xmax="high"), height=0.2)
            + geom_point() + facet_grid("panel ~ .") + scale_x_log10()
            + labs(title=title, x="transition step (log)", y="", caption=caption) + theme_bw())
    save_png(plot, out, 7.0, min(30.0, 2.0 + 1.2 * df["panel"].nunique() * max(1, df["persona"].nunique()) / 3), dpi)
