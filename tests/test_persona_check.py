"""Persona check: KL from base and trait scores per persona; a persona without a
difference from base is flagged loudly."""

from __future__ import annotations

import logging
import shutil

import pytest

from tests.persona_toy import build_toy_model, toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.persona.check import (
    OK,
    TABLE_COLUMNS,
    CheckSettings,
    check_personas,
    flag_for,
    format_table,
    warn_flags,
)

SETTINGS = CheckSettings(
    min_kl=1e-3,
    trait_prompts=("Say something.", "Tell me a thing."),
    samples_per_prompt=2,
    max_new_tokens=6,
)


@pytest.mark.parametrize(
    ("kl", "delta", "judged", "flag"),
    [
        (0.5, 10.0, True, OK),
        (1e-6, 10.0, True, "NO_KL_FROM_BASE"),
        (0.5, -2.0, True, "NO_TRAIT_INCREASE"),
        (0.5, 0.0, True, "NO_TRAIT_INCREASE"),
        (0.0, None, True, "NO_KL_FROM_BASE;TRAIT_SCORE_MISSING"),
        (0.5, None, False, "TRAIT_NOT_SCORED"),
        (float("nan"), 3.0, True, "NO_KL_FROM_BASE"),
    ],
)
def test_flags(kl, delta, judged, flag):
    assert flag_for(kl, delta, SETTINGS, judged) == flag


def test_check_flags_a_copy_of_base_and_passes_a_changed_model(toy_model_dir, tmp_path, caplog):  # noqa: F811
    same = tmp_path / "same"
    shutil.copytree(toy_model_dir, same)
    other = build_toy_model(toy_model_dir, tmp_path / "other", seed=7)

    def make_judge():
        # a stand-in judge: certain of a score that depends on the answer's length
        def judge(messages):
            answer = messages[0]["content"].split("[ANSWER START]\n")[1].split("\n[ANSWER END]")[0]
            return {len(answer) % 101: 1.0}

        return judge

    traits = {"same": "1: I am the same.", "other": "1: I differ."}
    rows, answers = check_personas(
        "toy", toy_model_dir, {"same": same, "other": other}, traits, SETTINGS, make_judge, 0.25
    )
    by = {r["persona"]: r for r in rows}
    assert by["same"]["kl_mean"] == pytest.approx(0.0, abs=1e-9)
    assert by["same"]["flag"].startswith("NO_KL_FROM_BASE")
    assert by["other"]["kl_mean"] > 1e-3
    assert by["other"]["n_answers"] == 4 and by["other"]["n_scored_base"] == 4
    assert {a["answered_by"] for a in answers} == {"persona", "base"}
    other_scores = [a["trait_score"] for a in answers if a["persona"] == "other"]
    persona_mean = sum(other_scores[:4]) / 4
    base_mean = sum(other_scores[4:]) / 4
    assert [a["answered_by"] for a in answers if a["persona"] == "other"] == ["persona"] * 4 + [
        "base"
    ] * 4
    assert by["other"]["trait_delta"] == pytest.approx(persona_mean - base_mean)
    assert all(a["trait_score"] == len(a["answer"]) % 101 for a in answers)
    assert len(answers) == 2 * 2 * 4
    with caplog.at_level(logging.WARNING):
        lines = warn_flags(rows)
    assert any("toy/same" in line and "NO_KL_FROM_BASE" in line for line in lines)
    assert "PERSONA CHECK FLAG: toy/same" in caplog.text


def test_table_has_fixed_columns_and_empty_cells_for_missing():
    row = dict.fromkeys(TABLE_COLUMNS, None) | {
        "model": "m",
        "persona": "p",
        "kl_mean": 0.25,
        "flag": OK,
    }
    table = format_table([row])
    header, line = table.splitlines()
    assert header.split("\t") == list(TABLE_COLUMNS)
    cells = dict(zip(TABLE_COLUMNS, line.split("\t"), strict=True))
    assert cells["kl_mean"] == "0.25" and cells["trait_delta"] == "" and cells["flag"] == "ok"
