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
    flag_for,
    format_table,
    probe_models,
    probe_summary,
    read_probes,
    tabulate,
    warn_flags,
    write_probes,
)

SETTINGS = CheckSettings(
    min_kl=1e-3, trait_prompts=("Say something.", "Tell me a thing."), samples_per_prompt=2, max_new_tokens=6
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


def length_scorer(prompts):
    """A stand-in judge: certain of a score that is the answer's length."""
    answers = [p.split("[ANSWER START]\n")[1].split("\n[ANSWER END]")[0] for p in prompts]
    return [(float(len(a) % 101), 1.0) for a in answers]


def test_check_flags_a_copy_of_base_and_passes_a_changed_model(toy_model_dir, tmp_path, caplog):  # noqa: F811
    same = tmp_path / "same"
    shutil.copytree(toy_model_dir, same)
    other = build_toy_model(toy_model_dir, tmp_path / "other", seed=7)
    probes = probe_models(toy_model_dir, {"same": same, "other": other}, SETTINGS)
    traits = {"same": "1: I am the same.", "other": "1: I differ."}
    rows, answers = tabulate("toy", probe_summary(probes), traits, SETTINGS, length_scorer)
    by = {r["persona"]: r for r in rows}
    assert by["same"]["kl_mean"] == pytest.approx(0.0, abs=1e-9)
    assert by["same"]["flag"].startswith("NO_KL_FROM_BASE")
    assert by["other"]["kl_mean"] > 1e-3
    assert by["other"]["n_answers"] == 4 and by["other"]["n_scored_base"] == 4
    other = [a for a in answers if a["persona"] == "other"]
    assert [a["answered_by"] for a in other] == ["persona"] * 4 + ["base"] * 4
    assert all(a["trait_score"] == len(a["answer"]) % 101 for a in answers)
    persona_mean = sum(a["trait_score"] for a in other[:4]) / 4
    base_mean = sum(a["trait_score"] for a in other[4:]) / 4
    assert by["other"]["trait_delta"] == pytest.approx(persona_mean - base_mean)
    # the same seeds for every model: a copy of the base answers exactly like the base
    same = [a["answer"] for a in answers if a["persona"] == "same"]
    assert same[:4] == same[4:]
    with caplog.at_level(logging.WARNING):
        lines = warn_flags(rows)
    assert any("toy/same" in line and "NO_KL_FROM_BASE" in line for line in lines)
    assert "PERSONA CHECK FLAG: toy/same" in caplog.text


def test_without_a_judge_every_persona_is_flagged_not_scored(toy_model_dir):  # noqa: F811
    probes = probe_models(toy_model_dir, {}, SETTINGS)
    probes.personas["p"] = probes.base
    [row], _ = tabulate("toy", probe_summary(probes), {"p": "t"}, SETTINGS, None)
    assert row["flag"] == "NO_KL_FROM_BASE;TRAIT_NOT_SCORED" and row["trait_score_base"] is None


def test_table_has_fixed_columns_and_empty_cells_for_missing():
    row = dict.fromkeys(TABLE_COLUMNS, None) | {"model": "m", "persona": "p", "kl_mean": 0.25, "flag": OK}
    table = format_table([row])
    header, line = table.splitlines()
    assert header.split("\t") == list(TABLE_COLUMNS)
    cells = dict(zip(TABLE_COLUMNS, line.split("\t"), strict=True))
    assert cells["kl_mean"] == "0.25" and cells["trait_delta"] == "" and cells["flag"] == "ok"


def test_probe_file_round_trips_and_names_a_missing_persona(tmp_path):
    summary = {
        "base": {"answers": [{"key": "trait-00", "sample_idx": 0, "question": "Q", "answer": "A"}]},
        "personas": {"p": {"divergence": {"kl_mean": 0.5, "kl_max": 1.0}, "answers": []}},
    }
    path = tmp_path / "probes.json"
    write_probes(path, "toy", summary)
    assert read_probes(path, ["p"]) == {"model": "toy", **summary}
    with pytest.raises(ValueError, match=r"probes.json: no probe of persona\(s\) q; found: p"):
        read_probes(path, ["p", "q"])
    path.write_text("{")
    with pytest.raises(ValueError, match=r"probes\.json: line 1, column 2: not JSON"):
        read_probes(path, ["p"])
