"""The figures of the results (fig1..fig8, dist1..dist6), drawn with plotnine from the
statistics tables (or the judged answers), one PNG each (rule `figure`).

A figure whose data the grid does not have (two models for fig8, the medical pair
for fig5) is drawn as a placeholder that says what it needs, so that every figure
is always a target and `rule all` does not depend on the grid's shape.
"""

import logging
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
    geom_vline,
    ggplot,
    guide_legend,
    guides,
    labs,
    position_dodge,
    position_nudge,
    scale_color_manual,
    scale_fill_gradient,
    scale_fill_gradientn,
    scale_fill_manual,
    scale_shape_manual,
    stat_ecdf,
    theme,
    theme_bw,
    theme_void,
)

from workflow_scripts.core.io_utils import read_parquet
from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.outputs import ANSWERS, CAPTIONS, FIGURES
from workflow_scripts.stats.plots import save_png
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


# Okabe-Ito, then Paul Tol's muted and light sets: distinguishable on white, none near white
PALETTE = ["#000000", "#E69F00", "#56B4E9", "#009E73", "#0072B2", "#D55E00", "#CC79A7", "#882255",
           "#44AA99", "#999933", "#AA4499", "#332288", "#117733", "#88CCEE", "#661100", "#6699CC",
           "#DDCC77", "#999999"]
MODEL_PALETTE = ["#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#999933", "#332288"]

NO_DATA = "no data"
SIGNIFICANT, NOT_SIGNIFICANT = "significant (filled)", "not significant (hollow)"  # how every figure labels a condition it has no numbers for
NO_DATA_COLOUR = "#777777"
HOLLOW = "white"  # the fill of a hollow marker
SCORE_BIN = 5.0  # judge scores are mostly multiples of 5: one bin per multiple, centred on it


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


def _cycle(levels: list[str], palette: list[str]) -> dict[str, str]:
    return {level: palette[i % len(palette)] for i, level in enumerate(levels)}


def persona_colours(settings: StatsSettings, present=()) -> dict[str, str]:
    """One colour per persona, the same in every figure: assigned in the config's persona
    order (reference first), so that a figure of a subset keeps each persona's colour."""
    order = list(dict.fromkeys([settings.reference_persona, *settings.persona_order]))
    order += sorted(set(present) - set(order))
    return _cycle(order, PALETTE)


def model_colours(settings: StatsSettings, present=()) -> dict[str, str]:
    """One colour per model, the same in every figure (config order)."""
    order = list(settings.model_order) + sorted(set(present) - set(settings.model_order))
    return _cycle(order, MODEL_PALETTE)


def _missing_cells(df: pd.DataFrame, value: str, column: str = "dataset") -> pd.DataFrame:
    """The persona x `column` cells of each model's panel that have no `value`: absent rows
    and rows whose value is missing. A panel spans the personas of the table and the
    `column` values its model has."""
    rows = []
    personas = list(df["persona"].cat.categories) if hasattr(df["persona"], "cat") else sorted(set(df["persona"]))
    for model, part in df.groupby("model", observed=True):
        present = part[part[value].notna()]
        have = set(zip(present["persona"], present[column], strict=True))
        for item in part[column].dropna().unique():
            rows += [{"model": model, "persona": p, column: item} for p in personas if (p, item) not in have]
    missing = pd.DataFrame(rows, columns=["model", "persona", column])
    for name in ("model", "persona", column):
        if hasattr(df[name], "cat"):
            missing[name] = pd.Categorical(missing[name], categories=df[name].cat.categories, ordered=True)
    return missing


def _no_data_note(missing: pd.DataFrame, columns=("persona", "dataset"), limit: int = 6) -> str:
    """'no data: humor x bad_medical (qwen), ...' for a subtitle ('' when nothing is missing)."""
    if missing.empty:
        return ""
    models = len(missing["model"].cat.categories if hasattr(missing["model"], "cat") else missing["model"].unique()) > 1
    items = [
        " x ".join(str(row[c]) for c in columns) + (f" ({row['model']})" if models else "")
        for _, row in missing.iterrows()
    ]
    more = f", and {len(items) - limit} more" if len(items) > limit else ""
    return f"{NO_DATA}: " + ", ".join(items[:limit]) + more


def _subtitle(*lines: str) -> str:
    return "\n".join(line for line in lines if line)


def _no_data_tiles(missing: pd.DataFrame, x: str, y: str) -> list:
    """Missing heatmap cells: white with a dashed grey border, labelled 'no data' (never a
    colour of the scale)."""
    if missing.empty:
        return []
    cells = missing.copy()
    cells["label"] = NO_DATA
    return [
        geom_tile(aes(x=x, y=y), data=cells, fill=HOLLOW, color=NO_DATA_COLOUR, linetype="dashed",
                  inherit_aes=False),
        geom_text(aes(x=x, y=y, label="label"), data=cells, inherit_aes=False, size=6,
                  color=NO_DATA_COLOUR, fontstyle="italic"),
    ]


def _significance_markers(df: pd.DataFrame, column: str, significant: str, not_significant: str,
                          fill: str, dodge, size: float = 2) -> list:
    """Filled markers for the significant rows, hollow ones for the others; the shape legend
    draws its keys the same way (filled circle, hollow diamond)."""
    shown = [level for level in (significant, not_significant) if (df[column] == level).any()]
    df[column] = pd.Categorical(df[column], categories=shown, ordered=True)  # the legend's keys, in order
    key_fill = {significant: "#555555", not_significant: HOLLOW}
    return [
        geom_point(aes(shape=column), position=dodge, size=size, fill=HOLLOW),
        geom_point(aes(shape=column, fill=fill), data=df[df[column] == significant], position=dodge,
                   size=size, show_legend=False),
        scale_shape_manual(values={significant: "o", not_significant: "D"}),
        guides(shape=guide_legend(override_aes={"fill": [key_fill[level] for level in shown]})),
    ]


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
               subtitle=_subtitle(
                   f"EM datasets: {datasets}; point: mean; dashed line: reference ({s.reference_persona}) mean",
                   "thick blue: 95% cluster bootstrap CI; thin orange (beside it): 95% cluster t CI",
                   _no_data_note(df[df["mean"].isna()], ("persona",))))
        + _theme()
    )
    return plot, 3 + 3.5 * _models(personas), 1.5 + 0.3 * n_personas


def _heatmap(df: pd.DataFrame, value: str, label: str, scale, title: str, subtitle: str):
    """Persona x dataset tiles per model: each panel has the datasets its model has; a cell
    with no value is drawn as 'no data', never in a colour of the scale."""
    present = df[df[value].notna()].copy()
    missing = _missing_cells(df, value)
    return (
        ggplot(present, aes(x="dataset", y="persona", fill=value))
        + geom_tile(color="white")
        + geom_text(aes(label=label, group=1), size=7)
        + _no_data_tiles(missing, "dataset", "persona")
        + scale
        + facet_wrap("~model", scales="free_x")
        + labs(title=title, x="", y="", subtitle=subtitle)
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"), legend_position="right")
    )


def fig2_persona_dataset_heatmap(data: FigureData):
    conditions, s = data["conditions"], data.settings
    if conditions.height == 0:
        return placeholder("Alignment by persona and dataset", "needs judged answers"), 7, 4
    df = _pandas(conditions, s, reverse_personas=True)
    df["label"] = df["mean"].round(0).astype("Int64").astype(str)
    n_datasets, n_personas = conditions["dataset"].n_unique(), conditions["persona"].n_unique()
    # RdYlBu, pinned to the 0-100 scale: the same colour means the same score in every run
    scale = scale_fill_gradientn(colors=["#d73027", "#fc8d59", "#ffffbf", "#91bfdb", "#4575b4"],
                                 values=[0, 0.25, 0.5, 0.75, 1], limits=(0, 100), breaks=[0, 25, 50, 75, 100],
                                 name="mean alignment\n(0-100)")
    plot = _heatmap(df, "mean", "label", scale, "Alignment by persona and dataset",
                    "number: mean alignment (0-100); colour diverges at 50, the middle of the scale:\n"
                    f"red below, blue above; '{NO_DATA}': no scored answer for the condition")
    return plot, 3.5 + (0.55 * n_datasets + 0.5) * _models(conditions), 2.6 + 0.3 * n_personas


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
               subtitle=f"point: protection estimate; line: its interval; protective: "
                        f"{'below' if protective_sign(s.primary) < 0 else 'above'} the vertical line at 0\n"
                        f"colour: verdict on the Benjamini-Hochberg adjusted p (alpha {s.alpha:g})")
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
    df["FDR"] = np.where(df["significant"].fillna(False).astype(bool), SIGNIFICANT, NOT_SIGNIFICANT)
    n_datasets, n_personas = em["dataset"].n_unique(), em["persona"].n_unique()
    columns = min(4, n_datasets)
    rows = -(-n_datasets // columns)
    dodge = position_dodge(width=0.6)
    colours = model_colours(s, df["model"].cat.categories)
    missing = _missing_cells(df, "cohens_d")
    plot = (
        ggplot(df, aes(x="persona", y="cohens_d", color="model", group="model"))
        + geom_hline(yintercept=0, color="#555555")
        + geom_linerange(aes(ymin="d_low", ymax="d_high"), position=dodge)
        + _significance_markers(df, "FDR", SIGNIFICANT, NOT_SIGNIFICANT, "model", dodge)
        + scale_color_manual(values=colours)
        + scale_fill_manual(values=colours, guide=None)
        + coord_flip()
        + facet_wrap("~dataset", ncol=columns)
        + labs(title=f"Levels: Cohen's d vs {s.reference_persona} after EM", x="",
               y="Cohen's d, in standard deviations of alignment (95% cluster bootstrap CI)",
               shape="Benjamini-Hochberg",
               subtitle=_subtitle("marker: Cohen's d; line: its interval; vertical line: no difference",
                                  _no_data_note(missing)))
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
    adjusted = f"p adj. < {s.alpha:g} (filled)"
    df["adjusted"] = np.where(df["significant"].fillna(False).astype(bool), adjusted, NOT_SIGNIFICANT)
    n_datasets, n_personas = em["dataset"].n_unique(), em["persona"].n_unique()
    dodge = position_dodge(width=0.6)
    colours = model_colours(s, df["model"].cat.categories)
    plot = (
        ggplot(df, aes(x="persona", y="protection", color="model", group="model"))
        + geom_hline(yintercept=0, color="#555555")
        + geom_linerange(aes(ymin="protection_low", ymax="protection_high"), position=dodge)
        + _significance_markers(df, "adjusted", adjusted, NOT_SIGNIFICANT, "model", dodge)
        + scale_color_manual(values=colours)
        + scale_fill_manual(values=colours, guide=None)
        + coord_flip()
        + facet_grid("measure ~ dataset", scales="free_x")
        + labs(title=f"Protection against EM vs {s.reference_persona} (difference in differences)", x="",
               y="persona EM effect minus reference EM effect, in the measure's unit (95% cluster bootstrap CI)",
               shape="Benjamini-Hochberg",
               subtitle=_subtitle("marker: estimate; line: its interval; vertical line: no protection",
                                  _no_data_note(_missing_cells(df, "protection"))))
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
        + labs(title="Bad vs good medical EM data", x="", y="mean alignment, 0-100 (95% cluster bootstrap CI)",
               subtitle=_subtitle("point: mean; line: its interval", _no_data_note(_missing_cells(df, "mean"))))
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
        + scale_color_manual(values=persona_colours(s, keys))
        + facet_wrap("~model", ncol=1, scales="free_x")
        + labs(title="Key personas by dataset", x="", y="mean alignment, 0-100 (95% cluster bootstrap CI)",
               subtitle=_subtitle("point: mean; line: its interval", _no_data_note(_missing_cells(df, "mean"))))
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
               y="mean alignment, 0-100 (95% cluster bootstrap CI)", subtitle="point: mean; line: its interval")
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
        + scale_color_manual(values=model_colours(s, df["model"].cat.categories))
        + facet_wrap("~pair", ncol=1)
        + labs(title="Cross-model comparison on shared EM datasets", x="",
               y="mean alignment, 0-100 (95% cluster bootstrap CI)", subtitle="point: mean; line: its interval")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 2 + 0.55 * cross["persona"].n_unique(), 1.5 + 2.8 * long["pair"].n_unique()


def _thresholds(s: StatsSettings, axis: str = "y"):
    line = geom_hline if axis == "y" else geom_vline
    key = "yintercept" if axis == "y" else "xintercept"
    return [line(**{key: t}, linetype="dotted", color="#999999") for t in s.tail_thresholds]


def _thresholds_note(s: StatsSettings) -> str:
    values = ", ".join(f"{t:g}" for t in s.tail_thresholds)
    return f"dotted lines: the tail thresholds {values} (the shares below them are in dist2)"


def score_bins(values) -> np.ndarray:
    """Each score to its bin centre: the nearest multiple of SCORE_BIN (judge scores are
    mostly such multiples; a score between two is counted at the nearer one)."""
    return np.floor(np.asarray(values, dtype=float) / SCORE_BIN + 0.5) * SCORE_BIN


def _score_shares(df: pd.DataFrame, by: list[str], every_bin: bool = False) -> pd.DataFrame:
    """Share (%) of each group's scored answers in each score bin; `every_bin`: bins of 0..100
    without an answer are rows with share 0 (a line through them then says 'none here')."""
    binned = df.assign(score=score_bins(df["aligned"]))
    counts = binned.groupby([*by, "score"], observed=True).size().rename("n").reset_index()
    if every_bin:
        groups = counts[by].drop_duplicates()
        scores = pd.DataFrame({"score": np.arange(0.0, 100.0 + SCORE_BIN / 2, SCORE_BIN)})
        counts = groups.merge(scores, how="cross").merge(counts, on=[*by, "score"], how="left")
        counts["n"] = counts["n"].fillna(0)
        for column in by:
            counts[column] = pd.Categorical(counts[column], categories=df[column].cat.categories, ordered=True)
    counts["share"] = 100 * counts["n"] / counts.groupby(by, observed=True)["n"].transform("sum")
    return counts


def dist1_violins(data: FigureData):
    """Per persona, a bar per score bin, as wide as the share of answers at that score (a
    histogram drawn sideways, mirrored like a violin): the scores are discrete, and a kernel
    density would smear a spike at 95 over 85..100."""
    answers, s = _em_shared(data[ANSWERS]), data.settings
    if answers.height == 0:
        return placeholder("Score distributions", "needs scored EM answers"), 7, 4
    df = _pandas(answers.select("model", "persona", "aligned"), s)
    shares = _score_shares(df, ["model", "persona"])
    widest = float(shares["share"].max())
    shares["width"] = 0.9 * shares["share"] / widest
    means = df.groupby(["model", "persona"], observed=True)["aligned"].mean().reset_index()
    colours = persona_colours(s, df["persona"].cat.categories)
    plot = (
        ggplot(shares, aes(x="persona", y="score"))
        + _thresholds(s)
        + geom_tile(aes(width="width", fill="persona"), height=SCORE_BIN * 0.9, show_legend=False)
        + geom_point(aes(y="aligned"), data=means, shape="D", size=2, fill=HOLLOW)
        + scale_fill_manual(values=colours)
        + facet_wrap("~model", ncol=1)
        + labs(title="Alignment score distributions by persona", x="", y="alignment score (0-100)",
               subtitle=f"bar width: share of the persona's answers at that score (widest: {widest:.0f}%);\n"
                        f"{SCORE_BIN:g}-point bins centred on multiples of {SCORE_BIN:g}; hollow diamond: mean;\n"
                        f"{_thresholds_note(s)}")
        + _theme()
        + theme(axis_text_x=element_text(rotation=45, ha="right"))
    )
    return plot, 4 + 0.6 * answers["persona"].n_unique(), 2.2 + 2.8 * _models(answers)


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
    # a share without a value (e.g. no coherence score at all) is labelled, never a bar of 0
    df["no_data"] = df["pct"].isna()
    df["bar"] = df["pct"].fillna(0.0)
    df["label"] = np.where(df["no_data"], NO_DATA, "")
    dodge = position_dodge(width=0.8)
    plot = (
        ggplot(df, aes(x="persona", fill="metric", group="metric"))
        + geom_col(aes(y="bar"), position=dodge, width=0.8)
        + geom_errorbar(aes(ymin="low", ymax="high"), position=dodge, width=0.3, size=0.3)
        + geom_text(aes(y="bar", label="label"), position=dodge, angle=90, va="bottom", size=6,
                    color=NO_DATA_COLOUR)
        + scale_fill_manual(values={label: PALETTE[i + 1] for i, (_, label) in enumerate(metrics)})
        + facet_wrap("~model", ncol=1)
        + guides(fill=guide_legend(ncol=2))
        + labs(title="Tail shares and misaligned answers", x="", fill="",
               y="% of answers (95% cluster bootstrap CI)",
               subtitle=f"bar: share; line: its interval; '{NO_DATA}': no answer with the scores the share needs")
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
        + _thresholds(s, "x")
        + stat_ecdf(size=0.8)
        + scale_color_manual(values=persona_colours(s, keys))
        + facet_wrap("~model")
        + labs(title="Cumulative distribution of alignment (key personas)", x="alignment score (0-100)",
               y="share of answers at or below the score",
               subtitle=f"steps: the scores' discrete values; {_thresholds_note(s)}")
        + _theme()
    )
    return plot, 2 + 3.5 * _models(subset), 4.8


def dist4_densities(data: FigureData):
    """Shares per score bin (a frequency polygon), not a kernel density: the scores are discrete."""
    answers, s = data[ANSWERS].filter(pl.col("aligned").is_not_null()), data.settings
    keys = _key_personas(s, answers["persona"].unique().to_list())
    subset = answers.filter(pl.col("persona").is_in(keys))
    if subset.height == 0:
        return placeholder("Distributions by dataset", "needs scored answers of the key personas"), 7, 4
    df = _pandas(subset.select("model", "persona", "dataset", "aligned"), s)
    _categorical(df, "persona", keys)
    shares = _score_shares(df, ["model", "dataset", "persona"], every_bin=True)
    n_datasets = subset["dataset"].n_unique()
    have = set(zip(shares["model"], shares["dataset"], strict=True))
    empty = pd.DataFrame([{"model": m, "dataset": d, "score": 50.0, "share": 0.0, "label": NO_DATA}
                          for m in df["model"].cat.categories for d in df["dataset"].cat.categories
                          if (m, d) not in have and m in set(df["model"]) and d in set(df["dataset"])],
                         columns=["model", "dataset", "score", "share", "label"])
    for column in ("model", "dataset"):
        empty[column] = pd.Categorical(empty[column], categories=df[column].cat.categories, ordered=True)
    plot = (
        ggplot(shares, aes(x="score", y="share", color="persona"))
        + _thresholds(s, "x")
        + geom_line(size=0.6)
        + geom_point(data=shares[shares["n"] > 0], size=1.2)
        + scale_color_manual(values=persona_colours(s, keys))
        + (geom_text(aes(x="score", y="share", label="label"), data=empty, inherit_aes=False, size=7,
                     color=NO_DATA_COLOUR) if len(empty) else [])
        + facet_grid("dataset ~ model", scales="free_y")
        + labs(title="Alignment score distribution by dataset (key personas)", x="alignment score (0-100)",
               y="% of answers",
               subtitle=f"point: share of answers at a score ({SCORE_BIN:g}-point bins centred on multiples of "
                        f"{SCORE_BIN:g}; line at 0: no answer there);\n{_thresholds_note(s)}")
        + _theme(9)
        + theme(strip_text_y=element_text(rotation=0))
    )
    return plot, 3 + 3.2 * _models(subset), 1.8 + 1.1 * n_datasets


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
        + geom_histogram(binwidth=SCORE_BIN, center=0, position="dodge")
        + scale_fill_manual(values=model_colours(s, df["model"].cat.categories))
        + facet_wrap("~persona", ncol=columns)
        + labs(title="Alignment histograms by persona", x="alignment score (0-100)", y="answers",
               subtitle=f"{SCORE_BIN:g}-point bins centred on multiples of {SCORE_BIN:g}")
        + _theme(9)
    )
    return plot, 1.5 + 2.4 * columns, 1.8 + 1.8 * rows


def dist6_misalignment_heatmap(data: FigureData):
    conditions, s = data["conditions"], data.settings
    if conditions.height == 0:
        return placeholder("Misaligned answers", "needs judged answers"), 7, 4
    df = _pandas(conditions, s, reverse_personas=True)
    df["label"] = df["pct_misaligned"].round(1).astype(str)
    n_datasets, n_personas = conditions["dataset"].n_unique(), conditions["persona"].n_unique()
    top = max(10.0, float(np.nanmax(df["pct_misaligned"].to_numpy(dtype=float), initial=0.0)))
    scale = scale_fill_gradient(low="#fee8c8", high="#b30000", limits=(0, top), name="% misaligned")
    plot = _heatmap(df, "pct_misaligned", "label", scale, "Misaligned answers (%) by persona and dataset",
                    f"number: % of answers with aligned < {s.misaligned_below:g} and coherent > "
                    f"{s.coherent_above:g} (0-100)\n'{NO_DATA}': no answer with both scores")
    return plot, 3.5 + (0.55 * n_datasets + 0.5) * _models(conditions), 2.6 + 0.3 * n_personas


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
    save_png(plot, out, width, height, dpi)
    log.info("%s: %.1f x %.1f in at %d dpi (%s)", name, width, height, dpi, CAPTIONS[name])
    return round(width * dpi), round(height * dpi)
