"""The figures of the results (fig1..fig8, dist1..dist6), drawn with plotnine from the
statistics tables (or the judged answers), one PNG each (rule `figure`).

A figure whose data the grid does not have (two models for fig8, the medical pair
for fig5) is drawn as a placeholder that says what it needs, so that every figure
is always a target and `rule all` does not depend on the grid's shape.
"""

import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import polars as pl
from plotnine import (
    aes,
    annotate,
    coord_flip,
    element_blank,
    element_text,
    facet_grid,
    facet_wrap,
    geom_col,
    geom_errorbar,
    geom_histogram,
    geom_hline,
    geom_line,
    geom_linerange,
    geom_point,
    geom_pointrange,
    geom_text,
    geom_tile,
    geom_violin,
    geom_vline,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_dodge,
    position_nudge,
    scale_color_manual,
    scale_fill_distiller,
    scale_fill_manual,
    scale_shape_manual,
    stat_ecdf,
    theme,
    theme_bw,
    theme_void,
)

from workflow_scripts.core.io_utils import atomic_path, read_parquet
from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.outputs import ANSWERS, CAPTIONS, FIGURES
from workflow_scripts.stats.protection import MEASURE_LABELS, MEASURE_UNITS, protective_sign
from workflow_scripts.stats.settings import StatsSettings
from workflow_scripts.stats.tables import read_table

log = logging.getLogger(__name__)


CONTROL_LABEL = "no EM"


VERDICT_COLOURS = {
    "supported": "#1b9e77",
    "not supported": "#7f7f7f",
    "contrary": "#d95f02",
    "not in FDR family": "#c0c0c0",
    "not assessable (1 seed)": "#7570b3",
    "not assessable: persona not expressed": "#e7298a",
}


PALETTE = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7",
           "#999999", "#882255", "#44AA99", "#999933", "#AA4499", "#332288"]


class FigureData:
    """The inputs of one figure: tables by name (polars), loaded on first use."""

    def __init__(self, paths: dict[str, str | Path], settings: StatsSettings):
        self.paths = {k: Path(v) for k, v in paths.items()}
        self.settings = settings
        self._cache: dict[str, pl.DataFrame] = {}

    @classmethod
    def from_frames(cls, frames: dict[str, pl.DataFrame], settings: StatsSettings) -> "FigureData":
        data = cls({}, settings)
        data._cache = dict(frames)
        return data

    def __getitem__(self, name: str) -> pl.DataFrame:
        if name not in self._cache:
            path = self.paths[name]
            self._cache[name] = read_parquet(path) if name == ANSWERS else read_table(path)
        return self._cache[name]


def _order(values, preferred, first=()) -> list[str]:
    present = list(dict.fromkeys(values))
    ordered = [v for v in (*first, *preferred) if v in present]
    return list(dict.fromkeys(ordered + sorted(set(present) - set(ordered))))


def _dataset_label(name: str) -> str:
    return CONTROL_LABEL if name == NO_EM else name


def _categorical(df: pd.DataFrame, column: str, order: list[str], reverse: bool = False) -> pd.DataFrame:
    order = list(reversed(order)) if reverse else order
    df[column] = pd.Categorical(df[column], categories=order, ordered=True)
    return df


def _pandas(frame: pl.DataFrame, settings: StatsSettings, reverse_personas: bool = False) -> pd.DataFrame:
    """To pandas with models, personas and datasets as ordered categories."""
    df = frame.to_pandas()
    if "model" in df:
        _categorical(df, "model", _order(df["model"], settings.model_order))
    if "persona" in df:
        order = _order(df["persona"], settings.persona_order, (settings.reference_persona,))
        _categorical(df, "persona", order, reverse=reverse_personas)
    if "dataset" in df:
        names = _order(df["dataset"], settings.dataset_order, (NO_EM,))
        df["dataset"] = df["dataset"].map(_dataset_label)
        _categorical(df, "dataset", [_dataset_label(n) for n in names])
    return df


def _theme(base_size: float = 10):
    return theme_bw(base_size=base_size) + theme(
        plot_title=element_text(weight="bold"),
        legend_position="bottom",
        panel_grid_minor=element_blank(),
    )


def _colours(levels: list[str]) -> dict[str, str]:
    return {level: PALETTE[i % len(PALETTE)] for i, level in enumerate(levels)}


def placeholder(title: str, message: str):
    """A figure that says why it has nothing to show."""
    return (
        ggplot()
        + annotate("rect", xmin=0, xmax=1, ymin=0, ymax=1, fill="#f4f4f4", color="#999999")
        + annotate("text", x=0.5, y=0.68, label=title, size=16, fontweight="bold")
        + annotate("text", x=0.5, y=0.4, label=message, size=12, color="#444444")
        + theme_void()
    )


def _models(frame: pl.DataFrame) -> int:
    return frame["model"].n_unique() if "model" in frame.columns and frame.height else 0


def _em_shared(answers: pl.DataFrame) -> pl.DataFrame:
    """EM answers on the datasets every persona of the model has (as in fig1)."""
    em = answers.filter((pl.col("dataset") != NO_EM) & pl.col("aligned").is_not_null())
    parts = []
    for _, part in em.group_by(["model"], maintain_order=True):
        per_persona = part.group_by("persona").agg(pl.col("dataset").unique())
        shared = set.intersection(*(set(d) for d in per_persona["dataset"].to_list()))
        parts.append(part.filter(pl.col("dataset").is_in(sorted(shared))))
    return pl.concat(parts) if parts else em


def _key_personas(settings: StatsSettings, present: list[str]) -> list[str]:
    return [p for p in settings.key_persona_list() if p in present]


def fig1_alignment_by_persona(data: FigureData):
    personas, s = data["personas"], data.settings
    if personas.height == 0:
        return placeholder("Alignment by persona", "needs EM datasets that every persona has"), 7, 4
    df = _pandas(personas, s, reverse_personas=True)
    reference = df[df["persona"] == s.reference_persona][["model", "mean"]]
    # the column holds each model's datasets comma-joined
    datasets = ", ".join(sorted({d for v in personas["datasets"].to_list() for d in v.split(",")}))
    n_personas = personas["persona"].n_unique()
    plot = (
        ggplot(df, aes(x="persona", y="mean", group=1))
        + geom_hline(aes(yintercept="mean"), data=reference, linetype="dashed", color="#555555")
        + geom_linerange(aes(ymin="boot_low", ymax="boot_high"), size=2.2, color="#0072B2", alpha=0.7)
        # the t interval beside the bootstrap bar (not under it), so both stay visible
        + geom_linerange(aes(ymin="t_low", ymax="t_high"), size=0.6, color="#D55E00",
                         position=position_nudge(x=0.3))
        + geom_point(size=2.5)
        + coord_flip()
        + facet_wrap("~model")
        + labs(title="Alignment by persona", x="", y="mean alignment (0-100)",
               subtitle=f"EM datasets: {datasets}; dashed: reference ({s.reference_persona})\n"
                        "thick blue: 95% cluster bootstrap CI; thin orange (beside it): 95% cluster t CI")
        + _theme()
    )
    return plot, 3 + 3.5 * _models(personas), 1.5 + 0.3 * n_personas


def fig2_persona_dataset_heatmap(data: FigureData):
    conditions, s = data["conditions"], data.settings
    df = _pandas(conditions, s, reverse_personas=True)
    df["label"] = df["mean"].round(0).astype("Int64").astype(str)
    n_datasets, n_personas = conditions["dataset"].n_unique(), conditions["persona"].n_unique()
    plot = (
        ggplot(df, aes(x="dataset", y="persona", fill="mean"))
        + geom_tile(color="white")
        + geom_text(aes(label="label", group=1), size=7)
        + scale_fill_distiller(palette="RdYlBu", direction=1, name="mean alignment")
        + facet_wrap("~model")
        + labs(title="Alignment by persona and dataset", x="", y="")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2.5 + (0.55 * n_datasets + 0.5) * _models(conditions), 2 + 0.3 * n_personas


def fig3_hypothesis_tests(data: FigureData):
    hypotheses, s = data["hypotheses"], data.settings
    if hypotheses.height == 0:
        return placeholder("Hypotheses: protection", "needs the hypotheses' personas, the reference and their "
                           "no-EM controls on an EM dataset"), 7, 4
    df = _pandas(hypotheses, s)
    df["panel"] = (
        df["model"].astype(str) + ": " + df["hypothesis"] + ", " + df["persona"].astype(str)
        + " (" + df["direction"] + ")"
    )
    panels = list(dict.fromkeys(df.sort_values(["hypothesis", "persona", "model"])["panel"]))
    _categorical(df, "panel", panels)
    _categorical(df, "dataset", list(reversed(df["dataset"].cat.categories)))
    n_models = _models(hypotheses)
    label = MEASURE_LABELS[s.primary]
    plot = (
        ggplot(df, aes(x="dataset", y="protection", color="verdict", group="verdict"))
        + geom_hline(yintercept=0, color="#555555")
        + geom_pointrange(aes(ymin="protection_low", ymax="protection_high"), size=0.5)
        + coord_flip()
        + facet_wrap("~panel", ncol=n_models)
        + scale_color_manual(values=VERDICT_COLOURS)
        + labs(title="Hypotheses: protection against EM",
               y=f"(persona EM effect) - ({s.reference_persona} EM effect), {label}, {MEASURE_UNITS[s.primary]} "
                 "(95% cluster bootstrap CI)", x="",
               subtitle=f"protective: {'below' if protective_sign(s.primary) < 0 else 'above'} 0; verdict on the "
                        f"Benjamini-Hochberg adjusted p (alpha {s.alpha:g})")
        + _theme()
    )
    rows = -(-len(panels) // n_models)
    n_datasets = hypotheses["dataset"].n_unique()
    return plot, 3 + 4 * n_models, 1.8 + rows * (0.3 * n_datasets + 0.6)


def fig4_effect_size_forest(data: FigureData):
    comparisons, s = data["comparisons"], data.settings
    em = comparisons.filter(pl.col("dataset") != NO_EM)
    if em.height == 0:
        return placeholder("Effect sizes", "needs a persona and the reference on an EM dataset"), 7, 4
    df = _pandas(em, s, reverse_personas=True)
    df["FDR"] = np.where(df["significant"].fillna(False).astype(bool), "significant", "not significant")
    n_datasets, n_personas = em["dataset"].n_unique(), em["persona"].n_unique()
    columns = min(4, n_datasets)
    rows = -(-n_datasets // columns)
    dodge = position_dodge(width=0.6)
    colours = _colours(list(df["model"].cat.categories))
    significant = df[df["FDR"] == "significant"]
    plot = (
        ggplot(df, aes(x="persona", y="cohens_d", color="model", shape="FDR", group="model"))
        + geom_hline(yintercept=0, color="#555555")
        + geom_linerange(aes(ymin="d_low", ymax="d_high"), position=dodge)
        + geom_point(position=dodge, size=2, fill="white")
        # filled markers over the significant ones: the legend's "filled" is what is drawn
        + geom_point(aes(fill="model"), data=significant, position=dodge, size=2, show_legend=False)
        + scale_shape_manual(values={"significant": "o", "not significant": "D"},
                             labels={"significant": "significant (filled)", "not significant": "not (hollow)"})
        + scale_color_manual(values=colours)
        + scale_fill_manual(values=colours)
        + coord_flip()
        + facet_wrap("~dataset", ncol=columns)
        + labs(title=f"Levels: Cohen's d vs {s.reference_persona} after EM", x="",
               y="Cohen's d (95% cluster bootstrap CI)", shape="Benjamini-Hochberg")
        + _theme()
    )
    return plot, 2 + 2.6 * columns, 1.5 + rows * (0.25 * n_personas + 0.6)


def fig9_protection_forest(data: FigureData):
    protection, s = data["protection"], data.settings
    em = protection.filter(pl.col("role") == "em")
    if em.height == 0:
        return placeholder("Protection", "needs personas, the reference and their no-EM controls on an EM dataset"), 7, 4
    df = _pandas(em, s, reverse_personas=True)
    order = [s.primary, *(m for m in MEASURE_LABELS if m != s.primary)]
    label = {m: f"{MEASURE_LABELS[m]} ({MEASURE_UNITS[m]})" for m in order}
    df["measure"] = pd.Categorical([label[m] for m in df["measure"]], categories=[label[m] for m in order])
    df["adjusted"] = np.where(df["significant"].fillna(False).astype(bool), "p adj. < alpha", "not significant")
    n_datasets, n_personas = em["dataset"].n_unique(), em["persona"].n_unique()
    dodge = position_dodge(width=0.6)
    colours = _colours(list(df["model"].cat.categories))
    plot = (
        ggplot(df, aes(x="persona", y="protection", color="model", group="model"))
        + geom_hline(yintercept=0, color="#555555")
        + geom_linerange(aes(ymin="protection_low", ymax="protection_high"), position=dodge)
        + geom_point(aes(shape="adjusted", fill="model"), position=dodge, size=2)
        + scale_shape_manual(values={"p adj. < alpha": "o", "not significant": "D"})
        + scale_color_manual(values=colours)
        + scale_fill_manual(values=colours, guide=None)
        + coord_flip()
        + facet_grid("measure ~ dataset", scales="free_x")
        + labs(title=f"Protection against EM vs {s.reference_persona} (difference in differences)", x="",
               y="persona EM effect minus reference EM effect (95% cluster bootstrap CI)", shape="")
        + _theme(9)
    )
    return plot, 2.5 + 2.4 * n_datasets, 2 + 2 * (0.25 * n_personas + 0.6)


def fig5_medical(data: FigureData):
    s = data.settings
    if s.medical_pair is None:
        return placeholder("Bad vs good medical", "needs statistics.medical_pair (set to null in this config)"), 7, 4
    medical = data["medical"]
    if medical.height == 0:
        bad, good = s.medical_pair
        return placeholder("Bad vs good medical", f"needs both '{bad}' and '{good}' for some persona"), 7, 4
    bad, good = s.medical_pair
    pairs = medical.select(["model", "persona"])
    conditions = data["conditions"].join(pairs, on=["model", "persona"]).filter(pl.col("dataset").is_in([bad, good]))
    df = _pandas(conditions, s)
    dodge = position_dodge(width=0.5)
    plot = (
        ggplot(df, aes(x="persona", y="mean", color="dataset", group="dataset"))
        + geom_pointrange(aes(ymin="boot_low", ymax="boot_high"), position=dodge)
        + scale_color_manual(values={bad: "#D55E00", good: "#009E73"})
        + facet_wrap("~model", ncol=1)
        + labs(title="Bad vs good medical EM data", x="", y="mean alignment (95% cluster bootstrap CI)")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2 + 0.55 * medical["persona"].n_unique(), 1.5 + 2.6 * _models(medical)


def fig6_key_personas_by_dataset(data: FigureData):
    conditions, s = data["conditions"], data.settings
    keys = _key_personas(s, conditions["persona"].unique().to_list())
    subset = conditions.filter(pl.col("persona").is_in(keys))
    if subset.height == 0:
        return placeholder("Key personas by dataset", "needs the key personas in the answers"), 7, 4
    df = _pandas(subset, s)
    _categorical(df, "persona", keys)
    dodge = position_dodge(width=0.6)
    plot = (
        ggplot(df, aes(x="dataset", y="mean", color="persona", group="persona"))
        + geom_pointrange(aes(ymin="boot_low", ymax="boot_high"), position=dodge, size=0.4)
        + scale_color_manual(values=_colours(keys))
        + facet_wrap("~model", ncol=1)
        + labs(title="Key personas by dataset", x="", y="mean alignment (95% cluster bootstrap CI)")
        + _theme()
        + theme(axis_text_x=element_text(rotation=30, ha="right"))
    )
    return plot, 2.5 + 0.8 * subset["dataset"].n_unique(), 1.5 + 2.8 * _models(subset)


def fig7_dataset_difficulty(data: FigureData):
    datasets, s = data["datasets"], data.settings
    if datasets.height == 0:
        return placeholder("Dataset difficulty", "needs EM datasets"), 7, 4
    long = pl.concat(
        [
            datasets.select("model", "dataset", "rank", "mean", "boot_low", "boot_high")
            .with_columns(pl.lit("mean over personas").alias("what")),
            datasets.select("model", "dataset", "rank", pl.col("reference_mean").alias("mean"),
                            pl.col("reference_low").alias("boot_low"), pl.col("reference_high").alias("boot_high"))
            .with_columns(pl.lit(f"reference ({s.reference_persona})").alias("what")),
        ],
        how="vertical_relaxed",
    )
    df = long.to_pandas()
    em = datasets.filter(pl.col("dataset") != NO_EM).group_by("dataset").agg(pl.col("mean").mean()).sort("mean")
    names = [*em["dataset"].to_list(), NO_EM]  # bottom to top after coord_flip
    df["dataset"] = df["dataset"].map(_dataset_label)
    _categorical(df, "dataset", [_dataset_label(n) for n in names if n in set(datasets["dataset"].to_list())])
    _categorical(df, "model", _order(df["model"], s.model_order))
    dodge = position_dodge(width=0.5)
    plot = (
        ggplot(df, aes(x="dataset", y="mean", color="what", group="what"))
        + geom_pointrange(aes(ymin="boot_low", ymax="boot_high"), position=dodge)
        + scale_color_manual(values={"mean over personas": "#0072B2", f"reference ({s.reference_persona})": "#D55E00"})
        + coord_flip()
        + facet_wrap("~model")
        + labs(title="Dataset difficulty (hardest at the bottom)", x="", color="",
               y="mean alignment (95% cluster bootstrap CI)")
        + _theme()
    )
    return plot, 3 + 3.5 * _models(datasets), 1.8 + 0.35 * datasets["dataset"].n_unique()


def fig8_cross_model(data: FigureData):
    cross, s = data["cross_model"], data.settings
    if cross.height == 0:
        return placeholder("Cross-model comparison", "needs two models with a shared EM dataset"), 7, 4
    long = pl.concat(
        [
            cross.select("model_a", "model_b", "persona", "datasets",
                         pl.col(f"model_{side}").alias("model"), pl.col(f"mean_{side}").alias("mean"),
                         pl.col(f"{side}_low").alias("low"), pl.col(f"{side}_high").alias("high"))
            for side in ("a", "b")
        ],
        how="vertical_relaxed",
    ).with_columns(pl.format("{} vs {}", "model_a", "model_b").alias("pair"))
    df = _pandas(long, s)
    dodge = position_dodge(width=0.5)
    plot = (
        ggplot(df, aes(x="persona", y="mean", color="model", group="model"))
        + geom_pointrange(aes(ymin="low", ymax="high"), position=dodge)
        + scale_color_manual(values=_colours(list(df["model"].cat.categories)))
        + facet_wrap("~pair", ncol=1)
        + labs(title="Cross-model comparison on shared EM datasets", x="",
               y="mean alignment (95% cluster bootstrap CI)")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2 + 0.55 * cross["persona"].n_unique(), 1.5 + 2.8 * long["pair"].n_unique()


def _thresholds(s: StatsSettings):
    return [geom_hline(yintercept=t, linetype="dotted", color="#999999") for t in s.tail_thresholds]


def dist1_violins(data: FigureData):
    answers, s = _em_shared(data[ANSWERS]), data.settings
    if answers.height == 0:
        return placeholder("Score distributions", "needs scored EM answers"), 7, 4
    df = _pandas(answers.select("model", "persona", "aligned"), s)
    means = df.groupby(["model", "persona"], observed=True)["aligned"].mean().reset_index()
    plot = (
        ggplot(df, aes(x="persona", y="aligned"))
        + _thresholds(s)
        + geom_violin(aes(fill="persona"), scale="width", alpha=0.6, show_legend=False, n=128)
        + geom_point(aes(y="aligned"), data=means, shape="D", size=2)
        + scale_fill_manual(values=_colours(list(df["persona"].cat.categories)))
        + facet_wrap("~model", ncol=1)
        + labs(title="Alignment score distributions by persona", x="", y="alignment (diamond: mean)")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2 + 0.55 * answers["persona"].n_unique(), 1.5 + 2.8 * _models(answers)


def dist2_misalignment_rates(data: FigureData):
    personas, s = data["personas"], data.settings
    if personas.height == 0:
        return placeholder("Misalignment rates", "needs EM datasets that every persona has"), 7, 4
    metrics = [(f"pct_below_{t:g}", f"% aligned < {t:g}") for t in s.tail_thresholds]
    metrics.append(("pct_misaligned", f"% misaligned (aligned < {s.misaligned_below:g}, coherent > {s.coherent_above:g})"))
    long = pl.concat(
        [
            personas.select("model", "persona", pl.col(c).alias("pct"), pl.col(f"{c}_low").alias("low"),
                            pl.col(f"{c}_high").alias("high")).with_columns(pl.lit(label).alias("metric"))
            for c, label in metrics
        ]
    )
    df = _pandas(long, s)
    _categorical(df, "metric", [label for _, label in metrics])
    dodge = position_dodge(width=0.8)
    plot = (
        ggplot(df, aes(x="persona", y="pct", fill="metric", group="metric"))
        + geom_col(position=dodge, width=0.8)
        + geom_errorbar(aes(ymin="low", ymax="high"), position=dodge, width=0.3, size=0.3)
        + scale_fill_manual(values={label: PALETTE[i + 1] for i, (_, label) in enumerate(metrics)})
        + facet_wrap("~model", ncol=1)
        + guides(fill=guide_legend(ncol=2))
        + labs(title="Tail shares and misaligned answers", x="", fill="",
               y="% of answers (95% cluster bootstrap CI)")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2.5 + 0.6 * personas["persona"].n_unique(), 1.8 + 2.8 * _models(personas)


def dist3_cdf(data: FigureData):
    answers, s = _em_shared(data[ANSWERS]), data.settings
    keys = _key_personas(s, answers["persona"].unique().to_list())
    subset = answers.filter(pl.col("persona").is_in(keys))
    if subset.height == 0:
        return placeholder("Cumulative distributions", "needs scored EM answers of the key personas"), 7, 4
    df = _pandas(subset.select("model", "persona", "aligned"), s)
    _categorical(df, "persona", keys)
    plot = (
        ggplot(df, aes(x="aligned", color="persona"))
        + [geom_vline(xintercept=t, linetype="dotted", color="#999999") for t in s.tail_thresholds]
        + stat_ecdf(size=0.8)
        + scale_color_manual(values=_colours(keys))
        + facet_wrap("~model")
        + labs(title="Cumulative distribution of alignment (key personas)", x="alignment", y="share of answers")
        + _theme()
    )
    return plot, 2 + 3.5 * _models(subset), 4.5


def dist4_densities(data: FigureData):
    answers, s = data[ANSWERS].filter(pl.col("aligned").is_not_null()), data.settings
    keys = _key_personas(s, answers["persona"].unique().to_list())
    subset = answers.filter(pl.col("persona").is_in(keys))
    if subset.height == 0:
        return placeholder("Densities by dataset", "needs scored answers of the key personas"), 7, 4
    df = _pandas(subset.select("model", "persona", "dataset", "aligned"), s)
    _categorical(df, "persona", keys)
    n_datasets = subset["dataset"].n_unique()
    plot = (
        ggplot(df, aes(x="aligned", color="persona"))
        + [geom_vline(xintercept=t, linetype="dotted", color="#999999") for t in s.tail_thresholds]
        + geom_line(stat="density", size=0.7, n=128)
        + scale_color_manual(values=_colours(keys))
        + facet_grid("dataset ~ model", scales="free_y")
        + labs(title="Alignment densities by dataset (key personas)", x="alignment", y="density")
        + _theme(9)
        + theme(strip_text_y=element_text(rotation=0))
    )
    return plot, 3 + 3.2 * _models(subset), 1.5 + 1.1 * n_datasets


def dist5_histograms(data: FigureData):
    answers, s = _em_shared(data[ANSWERS]), data.settings
    if answers.height == 0:
        return placeholder("Histograms", "needs scored EM answers"), 7, 4
    df = _pandas(answers.select("model", "persona", "aligned"), s)
    n_personas = answers["persona"].n_unique()
    columns = min(4, n_personas)
    rows = -(-n_personas // columns)
    plot = (
        ggplot(df, aes(x="aligned", fill="model"))
        + geom_histogram(binwidth=5, boundary=0, position="dodge")
        + scale_fill_manual(values=dict(zip(df["model"].cat.categories, ["#0072B2", "#E69F00", *PALETTE], strict=False)))
        + facet_wrap("~persona", ncol=columns)
        + labs(title="Alignment histograms by persona", x="alignment", y="answers")
        + _theme(9)
    )
    return plot, 1.5 + 2.4 * columns, 1.5 + 1.8 * rows


def dist6_misalignment_heatmap(data: FigureData):
    conditions, s = data["conditions"], data.settings
    df = _pandas(conditions, s, reverse_personas=True)
    df["label"] = df["pct_misaligned"].round(1).astype(str)
    n_datasets, n_personas = conditions["dataset"].n_unique(), conditions["persona"].n_unique()
    plot = (
        ggplot(df, aes(x="dataset", y="persona", fill="pct_misaligned"))
        + geom_tile(color="white")
        + geom_text(aes(label="label", group=1), size=7)
        + scale_fill_distiller(palette="YlOrRd", direction=1, name="% misaligned")
        + facet_wrap("~model")
        + labs(title="Misaligned answers (%) by persona and dataset", x="", y="",
               subtitle=f"aligned < {s.misaligned_below:g} and coherent > {s.coherent_above:g}")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2.5 + (0.55 * n_datasets + 0.5) * _models(conditions), 2 + 0.3 * n_personas


DRAW: dict[str, Callable] = {
    "fig1_alignment_by_persona": fig1_alignment_by_persona,
    "fig2_persona_dataset_heatmap": fig2_persona_dataset_heatmap,
    "fig3_hypothesis_tests": fig3_hypothesis_tests,
    "fig4_effect_size_forest": fig4_effect_size_forest,
    "fig5_medical": fig5_medical,
    "fig6_key_personas_by_dataset": fig6_key_personas_by_dataset,
    "fig7_dataset_difficulty": fig7_dataset_difficulty,
    "fig8_cross_model": fig8_cross_model,
    "fig9_protection_forest": fig9_protection_forest,
    "dist1_violins": dist1_violins,
    "dist2_misalignment_rates": dist2_misalignment_rates,
    "dist3_cdf": dist3_cdf,
    "dist4_densities": dist4_densities,
    "dist5_histograms": dist5_histograms,
    "dist6_misalignment_heatmap": dist6_misalignment_heatmap,
}


assert set(DRAW) == set(FIGURES), "figures.DRAW and outputs.FIGURES disagree"


MIN_WIDTH, MAX_INCHES = 6.5, 16.0


def draw_figure(name: str, data: FigureData, out: str | Path) -> tuple[int, int]:
    """Draw figure `name` to the PNG `out`; returns its size in pixels."""
    plot, width, height = DRAW[name](data)
    width, height = min(max(width, MIN_WIDTH), MAX_INCHES), min(height, MAX_INCHES)
    dpi = data.settings.figure_dpi
    with atomic_path(out, suffix=".png") as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # plotnine's notes on saving and dropped rows
        plot.save(tmp, format="png", width=width, height=height, dpi=dpi, verbose=False)
    log.info("%s: %.1f x %.1f in at %d dpi (%s)", name, width, height, dpi, CAPTIONS[name])
    return round(width * dpi), round(height * dpi)
