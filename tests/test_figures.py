"""Every figure as an image: the PNG has the size asked for and is not blank; a
figure the grid cannot fill says what it needs. Every figure as a plot object: missing
conditions are marked as missing, markers and legends agree, captions say what each
line and marker encodes, each persona keeps its colour, and discrete scores are drawn
as discrete."""

import dataclasses

import numpy as np
import polars as pl
import pytest
from PIL import Image

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.stats.figures import (
    DRAW,
    HOLLOW,
    NO_DATA,
    FigureData,
    draw_figure,
    fig5_medical,
    fig8_cross_model,
    persona_colours,
    score_bins,
)
from workflow_scripts.stats.outputs import ANSWERS, CAPTIONS, FIGURES
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables

HYPOTHESES = {"H1": {"personas": ["sycophancy"], "direction": "lower"},
              "H2": {"personas": ["goodness", "loving"], "direction": "higher"}}
DPI = 40  # small images keep the tests fast; the layout is the same at 300 dpi


def figure_data(grid: SyntheticGrid, medical_pair) -> FigureData:
    answers = synthetic_answers(grid)
    block = {"bootstrap_resamples": 200, "hypotheses": HYPOTHESES, "medical_pair": medical_pair,
             "figure_dpi": DPI}
    settings = settings_from_config(block, grid.models, grid.personas, grid.datasets)
    tables = compute_tables(answers, settings)
    return FigureData.from_frames({**tables, ANSWERS: answers}, settings)


@pytest.fixture(scope="module")
def two_models() -> FigureData:
    grid = SyntheticGrid(models=("qwen", "llama"), personas=("baseline", "sycophancy", "goodness", "loving", "humor"),
                         datasets=("risky_financial", "bad_medical", "good_medical"), questions=4,
                         answers_per_question=10, persona_shift={"goodness": 6.0, "sycophancy": -6.0})
    return figure_data(grid, ["bad_medical", "good_medical"])


@pytest.fixture(scope="module")
def offline() -> FigureData:
    """The shape of config/offline.yaml: one model, three personas, no medical pair."""
    grid = SyntheticGrid(models=("smollm2-135m",), questions=4, answers_per_question=4)
    return figure_data(grid, None)


def check_png(path, size):
    image = np.asarray(Image.open(path).convert("L"), dtype=float)
    assert image.shape == (size[1], size[0])
    assert image.std() > 10, "the image is (nearly) blank"
    assert (image < 128).mean() > 0.005, "too little ink to be a figure"


def test_every_figure_has_a_drawer_and_a_caption():
    assert set(DRAW) == set(FIGURES) == set(CAPTIONS)
    assert len(FIGURES) == 15


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_renders_for_two_models(two_models, name, tmp_path):
    out = tmp_path / f"{name}.png"
    size = draw_figure(name, two_models, out)
    check_png(out, size)


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_figure_renders_for_the_offline_grid(offline, name, tmp_path):
    out = tmp_path / f"{name}.png"
    size = draw_figure(name, offline, out)
    check_png(out, size)


def labels_of(plot) -> list[str]:
    return [str(layer.geom.aes_params.get("label", "")) for layer in plot.layers]


def test_placeholders_say_what_is_missing(offline, two_models):
    plot, *_ = fig8_cross_model(offline)
    assert any("needs two models" in label for label in labels_of(plot))
    plot, *_ = fig5_medical(offline)
    assert any("medical_pair" in label for label in labels_of(plot))
    plot, *_ = fig8_cross_model(two_models)
    assert not any("needs" in label for label in labels_of(plot))


def test_figure_size_follows_the_dpi(two_models, tmp_path):
    larger = FigureData.from_frames(two_models._cache, dataclasses.replace(two_models.settings, figure_dpi=2 * DPI))
    small = draw_figure("fig7_dataset_difficulty", two_models, tmp_path / "a.png")
    large = draw_figure("fig7_dataset_difficulty", larger, tmp_path / "b.png")
    assert large == (2 * small[0], 2 * small[1])
    check_png(tmp_path / "b.png", large)


def test_figures_of_comparisons_render_when_the_reference_persona_is_missing(tmp_path):
    """No reference persona: no comparison, hypothesis or cross-model rows at all."""
    answers = synthetic_answers(SyntheticGrid(personas=("goodness", "sycophancy"), questions=3, answers_per_question=3))
    block = {"bootstrap_resamples": 100, "hypotheses": HYPOTHESES, "medical_pair": None, "figure_dpi": DPI}
    settings = settings_from_config(block, personas=("baseline", "goodness", "sycophancy"))
    data = FigureData.from_frames({**compute_tables(answers, settings), ANSWERS: answers}, settings)
    assert data["comparisons"].height == 0
    for name in ("fig3_hypothesis_tests", "fig4_effect_size_forest", "fig7_dataset_difficulty", "fig8_cross_model"):
        size = draw_figure(name, data, tmp_path / f"{name}.png")
        check_png(tmp_path / f"{name}.png", size)


# ---- the plot objects: what is drawn, read from the ggplot layers and scales


@pytest.fixture(scope="module")
def gappy() -> FigureData:
    """Two models with holes, scores on multiples of 5 as the judges give them: llama has
    one EM dataset; qwen has no humor x bad_medical answers; loving x risky_financial has no
    coherence score at all (no misaligned share)."""
    grid = SyntheticGrid(models=("qwen", "llama"), personas=("baseline", "sycophancy", "goodness", "loving", "humor"),
                         datasets=("risky_financial", "bad_medical", "good_medical"), questions=4,
                         answers_per_question=10, persona_shift={"goodness": 6.0, "sycophancy": -6.0},
                         datasets_by_model={"llama": ("risky_financial",)})
    answers = synthetic_answers(grid).filter(
        ~((pl.col("model") == "qwen") & (pl.col("persona") == "humor") & (pl.col("dataset") == "bad_medical"))
    )
    no_coherence = (pl.col("persona") == "loving") & (pl.col("dataset") == "risky_financial")
    answers = answers.with_columns(
        pl.when(no_coherence).then(None).otherwise(pl.col("coherent")).alias("coherent"),
        (pl.col("aligned") / 5).round() * 5,
    )
    block = {"bootstrap_resamples": 100, "hypotheses": HYPOTHESES, "medical_pair": ["bad_medical", "good_medical"],
             "figure_dpi": DPI}
    settings = settings_from_config(block, grid.models, grid.personas, grid.datasets)
    return FigureData.from_frames({**compute_tables(answers, settings), ANSWERS: answers}, settings)


def geom(layer) -> str:
    return type(layer.geom).__name__


def no_data_layers(plot):
    """Layers that write 'no data' (a text layer whose label column holds it)."""
    found = []
    for layer in plot.layers:
        label = layer.mapping.get("label") if geom(layer) == "geom_text" else None
        if label and (data_of(plot, layer)[label] == NO_DATA).any():
            found.append(layer)
    return found


def data_of(plot, layer):
    return plot.data if layer._data is None else layer._data


def label_of(plot, key: str) -> str:
    return getattr(plot.labels, key, None) or ""


def cells(frame, *columns) -> set[tuple]:
    return set(zip(*(frame[c].astype(str) for c in columns), strict=True))


def scale(plot, aesthetic: str):
    return next(sc for sc in plot.scales if aesthetic in sc.aesthetics)


def test_figure_renders_on_a_grid_with_missing_conditions(gappy, tmp_path):
    for name in sorted(FIGURES):
        size = draw_figure(name, gappy, tmp_path / f"{name}.png")
        check_png(tmp_path / f"{name}.png", size)


@pytest.mark.parametrize(("name", "value", "missing"), [
    ("fig2_persona_dataset_heatmap", "mean", {("qwen", "humor", "bad_medical")}),
    ("dist6_misalignment_heatmap", "pct_misaligned",
     {("qwen", "humor", "bad_medical"), ("qwen", "loving", "risky_financial"), ("llama", "loving", "risky_financial")}),
])
def test_heatmaps_label_missing_cells_and_never_colour_them(gappy, name, value, missing):
    plot, *_ = DRAW[name](gappy)
    tiles = [layer for layer in plot.layers if geom(layer) == "geom_tile"]
    coloured = plot.data  # the tiles whose fill is mapped to the value
    assert coloured[value].notna().all()
    assert not cells(coloured, "model", "persona", "dataset") & missing
    [label] = no_data_layers(plot)
    assert cells(label._data, "model", "persona", "dataset") == missing
    blank = [t for t in tiles if t.geom.aes_params.get("fill") == HOLLOW]
    assert blank and cells(blank[0]._data, "model", "persona", "dataset") == missing
    # each model's panel has its own datasets: llama gets no empty medical columns
    assert plot.facet.free["x"]
    name_of_fill = scale(plot, "fill").name
    assert "%" in name_of_fill or "0-100" in name_of_fill
    assert NO_DATA in CAPTIONS[name] and NO_DATA in label_of(plot, "subtitle")


def test_heatmap_colours_are_pinned_to_the_score_scale_with_midpoint_50(gappy):
    plot, *_ = DRAW["fig2_persona_dataset_heatmap"](gappy)
    fill = scale(plot, "fill")
    assert tuple(fill.limits) == (0, 100) and "0-100" in fill.name
    assert "diverges at 50" in label_of(plot, "subtitle") and "diverges at 50" in CAPTIONS["fig2_persona_dataset_heatmap"]


def test_a_share_without_scores_is_labelled_no_data_not_drawn_as_zero(gappy):
    plot, *_ = DRAW["dist2_misalignment_rates"](gappy)
    [label] = no_data_layers(plot)
    missing = data_of(plot, label)[data_of(plot, label)["label"] == NO_DATA]
    assert cells(missing, "model", "persona") == {("llama", "loving")}
    assert missing["metric"].astype(str).str.startswith("% misaligned").all()
    assert (missing["bar"] == 0).all() and missing["pct"].isna().all()
    # the error bars and bars keep the dodge positions of every metric (no shifted bars)
    assert data_of(plot, label) is plot.data
    assert NO_DATA in CAPTIONS["dist2_misalignment_rates"]


def test_point_figures_list_the_conditions_without_data(gappy):
    for name in ("fig4_effect_size_forest", "fig9_protection_forest"):
        plot, *_ = DRAW[name](gappy)
        assert "no data: humor x bad_medical (qwen)" in label_of(plot, "subtitle"), name
        assert NO_DATA in CAPTIONS[name]


def with_significance(data: FigureData, table: str) -> FigureData:
    frame = data[table]
    flags = [i % 2 == 0 for i in range(frame.height)]
    return FigureData.from_frames({**data._cache, table: frame.with_columns(pl.Series("significant", flags))},
                                  data.settings)


@pytest.mark.parametrize(("name", "table"), [("fig4_effect_size_forest", "comparisons"),
                                             ("fig9_protection_forest", "protection")])
def test_significance_markers_match_their_legend_and_caption(gappy, name, table):
    plot, *_ = DRAW[name](with_significance(gappy, table))
    points = [layer for layer in plot.layers if geom(layer) == "geom_point"]
    hollow = [p for p in points if p.geom.aes_params.get("fill") == HOLLOW]
    filled = [p for p in points if p.mapping.get("fill") == "model"]
    assert len(hollow) == 1 and len(filled) == 1
    column = hollow[0].mapping["shape"]
    significant, not_significant = list(plot.data[column].cat.categories)
    assert "filled" in significant and "hollow" in not_significant
    # filled markers over exactly the significant rows; every other marker stays hollow
    assert set(filled[0]._data[column]) == {significant}
    assert len(filled[0]._data) == (plot.data[column] == significant).sum() > 0
    shapes = scale(plot, "shape").palette(2)
    assert shapes[significant] == "o" and shapes[not_significant] == "D"
    override = plot.guides.shape.override_aes["fill"]
    assert override[0] != HOLLOW and override[1] == HOLLOW  # the keys: filled circle, hollow diamond
    assert "filled circle" in CAPTIONS[name] and "hollow diamond" in CAPTIONS[name]


def test_every_persona_keeps_its_colour_across_figures(gappy):
    expected = persona_colours(gappy.settings)
    assert len(set(expected.values())) == len(expected)  # one colour per persona
    seen = {}
    for name, aesthetic in [("fig6_key_personas_by_dataset", "color"), ("dist1_violins", "fill"),
                            ("dist3_cdf", "color"), ("dist4_densities", "color")]:
        plot, *_ = DRAW[name](gappy)
        values = scale(plot, aesthetic).palette(0)
        for persona in plot.data["persona"].astype(str).unique():
            assert values[persona] == expected[persona], (name, persona)
            seen.setdefault(persona, set()).add(values[persona])
    assert all(len(colours) == 1 for colours in seen.values())
    # a subset of personas (the key ones) keeps the colours of the whole set
    subset = FigureData.from_frames(gappy._cache, dataclasses.replace(gappy.settings, key_personas=("goodness",)))
    plot, *_ = DRAW["dist3_cdf"](subset)
    assert scale(plot, "color").palette(0)["goodness"] == expected["goodness"]


def test_discrete_scores_are_drawn_per_score_not_as_kernel_densities(gappy):
    for name in ("dist1_violins", "dist4_densities"):
        plot, *_ = DRAW[name](gappy)
        stats = {type(layer.stat).__name__ for layer in plot.layers}
        geoms = {geom(layer) for layer in plot.layers}
        assert "stat_density" not in stats and "stat_ydensity" not in stats and "geom_violin" not in geoms, name
        scores = plot.data["score"].to_numpy()
        assert np.allclose(scores % 5, 0), name
        shares = plot.data.groupby([c for c in ("model", "dataset", "persona") if c in plot.data],
                                   observed=True)["share"].sum()
        assert np.allclose(shares, 100), name
        assert "no kernel smoothing" in CAPTIONS[name]
    # 990 of 1,600 answers at 95 are one bar at 95 holding 62% of the answers, not a slab
    answers = np.r_[np.full(990, 95.0), np.full(400, 90.0), np.full(210, 85.0)]
    assert list(np.unique(score_bins(answers))) == [85.0, 90.0, 95.0]
    assert score_bins([92.4, 92.6, 97.5, 100.0]).tolist() == [90.0, 95.0, 100.0, 100.0]


LINE_WORDS = {"dotted": "dotted", "dashed": "dashed"}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_captions_say_what_lines_markers_and_scales_encode(gappy, name):
    plot, *_ = DRAW[name](with_significance(with_significance(gappy, "comparisons"), "protection"))
    caption = CAPTIONS[name]
    text = caption + " " + label_of(plot, "subtitle")
    for layer in plot.layers:
        kind, params = geom(layer), layer.geom.aes_params
        if kind in ("geom_hline", "geom_vline") and params.get("linetype") in LINE_WORDS:
            word = LINE_WORDS[params["linetype"]]
            assert word in caption and word in label_of(plot, "subtitle"), f"{name}: {word} line unexplained"
        if kind in ("geom_linerange", "geom_pointrange", "geom_errorbar"):
            assert "interval" in caption, f"{name}: interval not in the caption"
        if kind == "geom_point" and params.get("shape") == "D":
            assert "diamond" in text, f"{name}: diamond marker unexplained"
    if no_data_layers(plot) or "no data" in label_of(plot, "subtitle"):
        assert NO_DATA in caption
    for axis in ("x", "y"):
        label = label_of(plot, axis)
        if "alignment" in label and "Cohen" not in label:
            assert "0-100" in label, f"{name}: the {axis} axis '{label}' has no scale"
    assert "0-100" in caption or "%" in caption or "unit" in caption or "standard deviations" in caption
