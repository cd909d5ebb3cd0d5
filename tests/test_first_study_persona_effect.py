"""The persona-effect check: do the personas differ from each other, or only share an
offset from the reference? And the pooling note of the reproduction section."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest

from workflow_scripts.first_study.persona_effect import (
    NO_DIFFERENCE,
    PERSONAS_DIFFER,
    SHARED_OFFSET,
    persona_effect,
    persona_effect_summary,
    reading,
)
from workflow_scripts.first_study.reproduction import pooled_vs_common, pooling_flips
from workflow_scripts.stats.settings import settings_from_config

QUESTIONS = [f"q{i}" for i in range(8)]
PERSONAS = ["a", "b", "c"]


def answers_frame(cells: dict[tuple[str, str, str], list[list[float]]]) -> pl.DataFrame:
    """(model, persona, dataset) -> per question, its answers' alignment scores."""
    rows = [
        {
            "model": m,
            "persona": p,
            "dataset": d,
            "seed": 0,
            "question_id": q,
            "sample_idx": i,
            "aligned": float(score),
            "coherent": 90.0,
        }
        for (m, p, d), per_question in cells.items()
        for q, scores in zip(QUESTIONS, per_question, strict=False)
        for i, score in enumerate(scores)
    ]
    return pl.DataFrame(rows)


def settings():
    return settings_from_config(
        {"bootstrap_resamples": 1000, "hypotheses": {}, "medical_pair": None},
        personas=["baseline", *PERSONAS],
    )


@pytest.fixture(scope="module")
def effect():
    rng = np.random.default_rng(2)
    question_effect = rng.normal(0, 3, len(QUESTIONS))  # questions differ, for everyone alike
    cells = {}
    for dataset, shifts, ref in (
        ("shared", {"a": 10.0, "b": 10.0, "c": 10.0}, 70.0),  # one offset for every persona
        ("differs", {"a": 0.0, "b": 0.0, "c": 20.0}, 70.0),
        ("nothing", {"a": 0.0, "b": 0.0, "c": 0.0}, 70.0),
    ):
        cells[("m", "baseline", dataset)] = [
            list(ref + question_effect[q] + rng.normal(0, 2, 10)) for q in range(8)
        ]
        for persona, shift in shifts.items():
            cells[("m", persona, dataset)] = [
                list(ref + shift + question_effect[q] + rng.normal(0, 2, 10)) for q in range(8)
            ]
    cells[("m", "a", "none")] = [[99.0] * 10 for _ in QUESTIONS]  # controls are left out
    return persona_effect(answers_frame(cells), settings(), PERSONAS)


def test_a_shared_offset_without_differences_between_personas_is_read_as_such(effect):
    rows = {r["dataset"]: r for r in effect.iter_rows(named=True)}
    assert set(rows) == {"shared", "differs", "nothing"}
    shared = rows["shared"]
    assert shared["between_p"] > 0.05 and shared["offset_low"] > 0
    assert shared["offset"] == pytest.approx(shared["personas_mean"] - shared["reference_mean"])
    assert shared["offset"] == pytest.approx(10.0, abs=1.5)
    assert shared["reading"] == SHARED_OFFSET
    assert rows["differs"]["between_p"] < 0.01 and rows["differs"]["reading"] == PERSONAS_DIFFER
    assert rows["nothing"]["reading"] == NO_DIFFERENCE
    assert shared["personas"] == 3 and shared["questions"] == 8 and shared["answers"] == 240


def test_the_reference_is_not_one_of_the_personas_compared(effect):
    # only a, b, c enter (a): with the reference included, `shared` would differ
    assert effect.filter(pl.col("dataset") == "shared")["personas"][0] == 3


def test_summary_counts_per_model(effect):
    row = persona_effect_summary(effect, 0.05).row(0, named=True)
    assert (row["n_datasets"], row["n_personas_differ"], row["n_shared_offset"]) == (3, 1, 1)
    assert row["n_no_difference"] == 2 and row["shared_on"] == "shared"
    assert (
        row["offset_min"]
        == row["offset_max"]
        == pytest.approx(effect.filter(pl.col("dataset") == "shared")["offset"][0])
    )


def test_an_undefined_test_never_reads_as_a_pattern():
    nan = float("nan")
    assert reading(nan, 1.0, 2.0, 0.05) == NO_DIFFERENCE
    assert reading(0.5, nan, 2.0, 0.05) == NO_DIFFERENCE
    assert reading(0.5, 1.0, 2.0, 0.05) == SHARED_OFFSET


def test_pooling_lists_only_personas_whose_dataset_set_differs():
    frame = answers_frame(
        {
            ("m", "baseline", "easy"): [[95.0, 95.0]],
            ("m", "baseline", "hard"): [[50.0, 50.0]],
            ("m", "misalignment", "hard"): [[60.0, 60.0]],
            ("m", "sarcasm", "easy"): [[70.0, 70.0]],
            ("m", "sarcasm", "hard"): [[60.0, 60.0]],
        }
    )
    pooling = pooled_vs_common(frame).sort("persona")
    assert pooling["pooled_mean"].to_list() == [72.5, 60.0, 65.0]  # misalignment worse, pooled
    assert pooling["common_mean"].to_list() == [50.0, 60.0, 60.0]  # better on the same data
    flips = pooling_flips(pooling, "baseline")
    # sarcasm also changes side but has the reference's datasets: not a pooling artefact
    assert [f["persona"] for f in flips] == ["misalignment"]
