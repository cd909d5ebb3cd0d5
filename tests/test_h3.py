"""H3: transition detection on constructed curves with known transitions, and the
mechanistic curves on constructed adapters that rotate at a known step."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from workflow_scripts.h3.mechanistic import (
    curves_from_grams,
    gram_matrices,
    max_rotation_step,
    pca_trajectory,
    read_lora_pairs,
    run_mechanistic,
    update_inner,
)
from workflow_scripts.h3.transition import (
    NO_TRANSITION,
    TRANSITION,
    TransitionSettings,
    compare_steps,
    detect_transition,
    fit_transition,
    logistic,
)

STEPS = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]


def planted_counts(rng, step: float, n_questions: int = 8, n: int = 40, high: float = 60.0, seeds=(0,)):
    """Binomial misaligned counts per (seed, question) x step around a logistic in
    log10(step) with its midpoint at `step`; questions differ in their ceiling."""
    x = np.log10(STEPS)
    cells, cell_seeds = [], []
    for seed in seeds:
        for _ in range(n_questions):
            ceiling = high * rng.uniform(0.6, 1.4)
            p = logistic(x, 2.0, ceiling, 6.0, np.log10(step)) / 100
            cells.append(rng.binomial(n, np.clip(p, 0, 1)))
            cell_seeds.append(seed)
    misaligned = np.array(cells, dtype=float)
    return misaligned, np.full_like(misaligned, n), cell_seeds


def test_sigmoid_fit_recovers_a_noiseless_midpoint():
    x = np.log10(STEPS)
    fit = fit_transition(STEPS, logistic(x, 1.0, 70.0, 5.0, np.log10(30)), min_rise=10)
    assert fit["status"] == TRANSITION
    assert fit["step"] == pytest.approx(30, rel=1e-3)
    assert fit["rise"] == pytest.approx(69, abs=0.1)


def test_planted_step_lies_in_its_interval_at_the_stated_coverage():
    """90% intervals over 20 independent noisy curves: the planted step is covered at
    about the nominal rate (at least 75% here: few resamples, few questions)."""
    rng = np.random.default_rng(3)
    settings = TransitionSettings(min_rise=10, bootstrap=40, seed=1, alpha=0.10)
    planted, covered, draws = 40.0, 0, 20
    for _ in range(draws):
        misaligned, coherent, seeds = planted_counts(rng, planted)
        result = detect_transition(STEPS, misaligned, coherent, seeds, settings)
        assert result["status"] == TRANSITION
        covered += result["low"] <= planted <= result["high"]
    assert covered / draws >= 0.75


def test_flat_curve_is_no_transition():
    rng = np.random.default_rng(0)
    misaligned = rng.binomial(40, 0.05, size=(8, len(STEPS))).astype(float)
    result = detect_transition(STEPS, misaligned, np.full_like(misaligned, 40), [0] * 8,
                               TransitionSettings(min_rise=10, bootstrap=50))
    assert result["status"] == NO_TRANSITION and result["step"] is None
    assert result["transition_share"] < 0.2


def test_a_rise_after_the_last_checkpoint_is_no_transition_within_training():
    x = np.log10(STEPS)
    fit = fit_transition(STEPS, logistic(x, 1.0, 70.0, 8.0, np.log10(5000)), min_rise=10)
    assert fit["status"] == NO_TRANSITION


def test_seeds_are_resampled_as_clusters():
    rng = np.random.default_rng(5)
    misaligned, coherent, seeds = planted_counts(rng, 20.0, seeds=(0, 1, 2))
    result = detect_transition(STEPS, misaligned, coherent, seeds, TransitionSettings(bootstrap=60))
    assert result["status"] == TRANSITION and result["low"] <= 20.0 <= result["high"]


def test_a_later_transition_is_detected_against_the_reference_and_no_transition_has_no_p():
    rng = np.random.default_rng(7)
    settings = TransitionSettings(bootstrap=100, seed=2)
    early = detect_transition(STEPS, *planted_counts(rng, 8.0), settings)
    late = detect_transition(STEPS, *planted_counts(rng, 128.0), settings)
    result = compare_steps(late["draws"], early["draws"], late, early, 0.05)
    assert result["status"] == "ok" and result["estimate"] == pytest.approx(np.log10(16), abs=0.3)
    assert result["low"] > 0 and result["p"] < 0.05
    flat = {"status": NO_TRANSITION, "log10_step": None}
    assert compare_steps([np.nan] * 100, early["draws"], flat, early, 0.05)["status"].startswith(NO_TRANSITION)


# ---- mechanistic curves


def write_adapter(directory: Path, modules: dict[tuple[int, str], tuple[np.ndarray, np.ndarray]],
                  r: int = 2, alpha: float = 4.0, rslora: bool = True) -> None:
    import torch
    from safetensors.torch import save_file

    directory.mkdir(parents=True)
    tensors = {}
    for (layer, module), (a, b) in modules.items():
        prefix = f"base_model.model.model.layers.{layer}.self_attn.{module}"
        tensors[f"{prefix}.lora_A.weight"] = torch.tensor(a, dtype=torch.bfloat16).contiguous()
        tensors[f"{prefix}.lora_B.weight"] = torch.tensor(b, dtype=torch.bfloat16).contiguous()
    save_file(tensors, directory / "adapter_model.safetensors")
    (directory / "adapter_config.json").write_text(json.dumps({"r": r, "lora_alpha": alpha, "use_rslora": rslora}))


def test_update_inner_equals_the_frobenius_product_of_the_full_updates():
    rng = np.random.default_rng(0)
    a1, b1, a2, b2 = rng.normal(size=(3, 7)), rng.normal(size=(5, 3)), rng.normal(size=(3, 7)), rng.normal(size=(5, 3))
    assert update_inner((a1, b1), (a2, b2)) == pytest.approx(float(np.sum((b1 @ a1) * (b2 @ a2))))


def test_rotation_spike_and_pca_find_the_step_where_the_adapter_turns(tmp_path):
    """The update grows along one direction, turns to an orthogonal one at step 16 and
    grows along it: the lowest local cosine is at 16, PC1 separates before from after."""
    rng = np.random.default_rng(1)
    d_in, d_out = 12, 10
    first = (rng.normal(size=(2, d_in)), rng.normal(size=(d_out, 2)))
    q, _ = np.linalg.qr(rng.normal(size=(d_in, 4)))
    first = (q[:, :2].T, first[1])
    second = (q[:, 2:].T, rng.normal(size=(d_out, 2)))
    turn = 16
    for step in STEPS:
        a, b = first if step < turn else second
        grow = np.log2(step) + 1
        noise = 0.01 * rng.normal(size=a.shape)
        write_adapter(tmp_path / f"step-{step}", {(0, "q_proj"): (a + noise, grow * b), (1, "v_proj"): (a, b)})
    history = [{"step": s, "loss": 2.0 / s, "grad_norm": 1.0} for s in (1, 2, 3)]
    result = run_mechanistic(tmp_path, history)
    assert result["summary"]["steps"] == STEPS
    assert result["summary"]["rotation_step"] == turn
    curves = result["curves"]
    q_norms = curves.filter(curves["layer"] == 0).sort("step")["norm"].to_list()
    assert q_norms == sorted(q_norms)  # the norm grows
    pca = result["pca"].sort("step")
    before = pca.filter(pca["step"] < turn)["pc1"].to_numpy()
    after = pca.filter(pca["step"] >= turn)["pc1"].to_numpy()
    assert np.sign(before).std() == 0 and np.sign(after).std() == 0 and np.sign(before[0]) != np.sign(after[0])
    assert result["training"]["loss"].to_list() == [2.0, 1.0, 2.0 / 3]


def test_lora_scale_is_applied_and_a_constant_adapter_never_rotates(tmp_path):
    a, b = np.eye(2, 4), np.ones((3, 2))
    for step in (1, 2, 4):
        write_adapter(tmp_path / f"step-{step}", {(0, "q_proj"): (a, b)}, r=2, alpha=4.0, rslora=False)
    pairs = read_lora_pairs(tmp_path / "step-1")
    assert np.allclose(pairs[(0, "q_proj")][1], 2.0 * b)  # alpha / r
    grams = gram_matrices([read_lora_pairs(tmp_path / f"step-{s}") for s in (1, 2, 4)])
    curves = curves_from_grams([1, 2, 4], grams)
    assert curves["local_cos"].drop_nulls().to_list() == pytest.approx([1.0] * 4)
    assert max_rotation_step(curves)["max_rotation"] == pytest.approx(0.0, abs=1e-9)
    assert pca_trajectory([1, 2, 4], sum(grams.values()))["pc1"].to_list() == pytest.approx([0.0] * 3, abs=1e-6)


# ---- the H3 test and its RESULTS.md lines


def judged_answers(rng, planted: float | None, n: int = 20, questions: int = 8) -> pl.DataFrame:
    """Judged answers of one persona's run at every step: misaligned (aligned 10) with the
    probability of a logistic around `planted` (None: a flat 3%), else aligned 90."""

    rows = []
    x = np.log10(STEPS)
    p = (logistic(x, 2.0, 60.0, 6.0, np.log10(planted)) if planted else np.full(x.size, 3.0)) / 100
    for q in range(questions):
        for j, step in enumerate(STEPS):
            for _ in range(n):
                rows.append({"seed": 0, "question_id": f"q{q}", "step": step,
                             "aligned": 10.0 if rng.random() < p[j] else 90.0, "coherent": 80.0})
    return pl.DataFrame(rows)


def test_h3_tests_find_a_later_transition_and_report_no_transition_as_its_own_outcome():
    from workflow_scripts.h3.analysis import H3Settings, analyse
    from workflow_scripts.stats.report import h3_section

    rng = np.random.default_rng(11)
    judged = {
        ("m", "baseline", "risky"): judged_answers(rng, 8.0),
        ("m", "goodness", "risky"): judged_answers(rng, 128.0),
        ("m", "humor", "risky"): judged_answers(rng, None),
    }
    settings = H3Settings(reference_persona="baseline", bootstrap=40, seed=0, alpha=0.05, min_rise=10)
    tables = analyse(judged, {}, settings)
    tests = {r["persona"]: r for r in tables["h3_tests"].to_dicts()}
    assert set(tests) == {"goodness", "humor"}
    assert tests["goodness"]["verdict"] == "EM sets in later than on the reference"
    assert tests["goodness"]["estimate"] == pytest.approx(np.log10(16), abs=0.3)
    assert tests["goodness"]["p_adj"] < 0.05
    assert tests["humor"]["verdict"] == "no transition within training: persona" and tests["humor"]["p"] is None
    pooled = tables["h3_transitions"].filter(tables["h3_transitions"]["seed"].is_null())
    assert pooled.height == 3
    curves = tables["h3_curves"]
    assert curves.filter(curves["seed"].is_null()).height == 3 * len(STEPS)
    section = h3_section(tables["h3_tests"])
    assert "H3 m / risky: goodness vs baseline" in section and "EM sets in later than on the reference" in section
    assert "humor vs baseline, transition at step none" in section
