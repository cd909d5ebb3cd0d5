"""Self-knowledge figures: behaviour against self-report per condition with the class
regions, and the class shares per persona. A figure without data says so."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import polars as pl
from plotnine import (
    aes,
    annotate,
    element_text,
    facet_wrap,
    geom_bar,
    geom_errorbar,
    geom_errorbarh,
    geom_hline,
    geom_point,
    geom_segment,
    ggplot,
    labs,
    scale_fill_manual,
    scale_shape_manual,
    theme,
    theme_bw,
)

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.self_knowledge.measures import CLASSES, Thresholds
from workflow_scripts.stats.plots import no_data_plot, save_png

CLASS_COLOURS = {"aligned": "#4c9f70", "coherent": "#d08c2c", "inverted": "#b03a48", "unclassified": "#bbbbbb"}
SHOWN = (*CLASSES, "unclassified")


def scatter(conditions: pl.DataFrame, thresholds: Thresholds, out: Path, dpi: int) -> None:
    """Behaviour (judged misaligned share) against self-report, one point per condition
    with both bootstrap CIs; the threshold lines cut the plane into the class regions."""
    title = "Self-knowledge: behaviour vs self-report"
    data = conditions.filter(pl.col("behaviour").is_not_null() & pl.col("self_report").is_not_null()) if conditions.height else conditions
    if data.height == 0:
        save_png(no_data_plot(title, "no condition with both a judged behaviour and a self-report"), out, 6.5, 3, dpi)
        return
    df = data.with_columns(
        pl.when(pl.col("dataset") == NO_EM).then(pl.lit("no EM")).otherwise(pl.lit("EM")).alias("em")
    ).to_pandas()
    b, s = thresholds.behaviour, thresholds.self_report
    plot = (
        ggplot(df, aes("self_report", "behaviour", colour="persona", shape="em"))
        + annotate("rect", xmin=0, xmax=1, ymin=0, ymax=b, fill=CLASS_COLOURS["aligned"], alpha=0.08)
        + annotate("rect", xmin=s, xmax=1, ymin=b, ymax=1, fill=CLASS_COLOURS["coherent"], alpha=0.08)
        + annotate("rect", xmin=0, xmax=s, ymin=b, ymax=1, fill=CLASS_COLOURS["inverted"], alpha=0.08)
        + annotate("text", x=0.5, y=b / 2, label="aligned", size=8, colour="grey")
        + annotate("text", x=(1 + s) / 2, y=(1 + b) / 2, label="coherent", size=8, colour="grey")
        + annotate("text", x=s / 2, y=(1 + b) / 2, label="inverted", size=8, colour="grey")
        + geom_hline(yintercept=b, linetype="dashed", colour="grey")
        + geom_segment(aes(x=s, xend=s, y=b, yend=1), inherit_aes=False, linetype="dashed", colour="grey")
        + geom_errorbar(aes(ymin="behaviour_low", ymax="behaviour_high"), width=0, alpha=0.5)
        + geom_errorbarh(aes(xmin="self_report_low", xmax="self_report_high"), height=0, alpha=0.5)
        + geom_point(size=2.5)
        + scale_shape_manual(values={"EM": "o", "no EM": "^"})
        + facet_wrap("model")
        + labs(
            title=title,
            x="self-report (0 aligned .. 1 misaligned)",
            y="judged misaligned share",
            shape="",
        )
        + theme_bw()
        + theme(plot_title=element_text(size=11))
    )
    save_png(plot, out, 7.5, 4.5, dpi)


def class_shares(classes: pl.DataFrame, out: Path, dpi: int) -> None:
    """Per persona, how its EM conditions divide into the three classes."""
    title = "Self-knowledge: classes of EM conditions per persona"
    if classes.height == 0:
        save_png(no_data_plot(title, "no EM condition with a judged behaviour"), out, 6.5, 3, dpi)
        return
    long = classes.unpivot(index=["model", "persona"], on=[f"n_{c}" for c in SHOWN], variable_name="class", value_name="n")
    df = long.with_columns(pl.col("class").str.strip_prefix("n_")).to_pandas()
    df["class"] = pd.Categorical(df["class"], categories=list(SHOWN))
    plot = (
        ggplot(df, aes("persona", "n", fill="class"))
        + geom_bar(stat="identity", position="fill")
        + scale_fill_manual(values=CLASS_COLOURS, drop=False)
        + facet_wrap("model")
        + labs(title=title, x="persona", y="share of EM conditions")
        + theme_bw()
        + theme(plot_title=element_text(size=11), axis_text_x=element_text(rotation=45, ha="right"))
    )
    save_png(plot, out, 7.5, 4.0, dpi)
