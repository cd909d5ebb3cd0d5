"""Every figure as an image: the PNG has the size asked for and is not blank; a
figure the grid cannot fill says what it needs."""

import dataclasses

import numpy as np
import pytest
from PIL import Image

from tests.synthetic import SyntheticGrid, synthetic_answers
from workflow_scripts.stats.figures import (
    DRAW,
    FigureData,
    draw_figure,
    fig5_medical,
    fig8_cross_model,
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
