"""H4 library: residual hooks, activation extraction, mean-difference directions,
the H4 tests."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
import torch

from workflow_scripts.h4.directions import (
    ALIGNED,
    MISALIGNED,
    DirectionSettings,
    answer_classes,
    cosine,
    extract_direction,
)
from workflow_scripts.h4.hooks import ResidualHooks, captured_answer_means, project_out


def tiny_llama(layers: int = 3, hidden: int = 32, vocab: int = 64):
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=vocab, hidden_size=hidden, intermediate_size=64, num_hidden_layers=layers,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                         tie_word_embeddings=False)
    return LlamaForCausalLM(config).eval()


IDS = torch.tensor([[3, 5, 7, 11, 13, 17], [2, 4, 6, 8, 10, 12]])


def logits(model) -> torch.Tensor:
    with torch.inference_mode():
        return model(input_ids=IDS).logits


def test_zero_vectors_leave_logits_bit_identical():
    model = tiny_llama()
    plain = logits(model)
    with ResidualHooks(model, [0, 1, 2]) as hooks:
        hooks.set_add(1, torch.zeros(32))
        hooks.set_projection(2, torch.zeros(32))
        hooked = logits(model)
    assert torch.equal(plain, hooked)


def test_hooks_are_removed_on_exit():
    model = tiny_llama()
    plain = logits(model)
    with ResidualHooks(model, [1]) as hooks:
        hooks.set_add(1, torch.ones(32))
        assert not torch.equal(logits(model), plain)
    assert torch.equal(logits(model), plain)


def test_direction_along_unembedding_raises_that_token_logit_by_alpha_times_its_norm():
    """Exact setting: the final norm replaced by the identity, so the logits are linear in
    the last layer's output: adding alpha * u / |u| with u the unembedding row of token t
    raises logit t by alpha * |u| at every position (and logit j by alpha * u_j . u / |u|)."""
    model = tiny_llama()
    model.model.norm = torch.nn.Identity()
    token, alpha = 9, 3.0
    u = model.lm_head.weight[token].detach().clone()
    plain = logits(model)
    with ResidualHooks(model, [2]) as hooks:
        hooks.set_add(2, alpha * u / u.norm())
        steered = logits(model)
    rise = steered - plain
    assert torch.allclose(rise[..., token], torch.full_like(rise[..., token], alpha * float(u.norm())), atol=1e-4)
    expected = alpha * (model.lm_head.weight.detach() @ u) / u.norm()
    assert torch.allclose(rise, expected.expand_as(rise), atol=1e-4)


def test_steering_through_the_final_norm_matches_the_norm_of_the_shifted_residual():
    """With the model's RMSNorm in place the rise is not linear; it equals
    lm_head(norm(x + alpha d)) - lm_head(norm(x)) with x the last layer's output."""
    model = tiny_llama()
    token, alpha = 9, 2.0
    d = model.lm_head.weight[token].detach().clone()
    with torch.inference_mode():
        x = model.model(input_ids=IDS).last_hidden_state  # already normed
    captured = {}
    handle = model.model.layers[2].register_forward_hook(lambda m, a, o: captured.setdefault("x", o[0] if isinstance(o, tuple) else o))
    plain = logits(model)
    handle.remove()
    with ResidualHooks(model, [2]) as hooks:
        hooks.set_add(2, alpha * d)
        steered = logits(model)
    with torch.no_grad():
        expected = model.lm_head(model.model.norm(captured["x"].clone() + alpha * d))
        assert torch.allclose(plain, model.lm_head(x.clone()), atol=1e-5)
    assert torch.allclose(steered, expected, atol=1e-4)
    assert (steered[..., token] > plain[..., token]).all()


def test_projection_removes_the_component_and_keeps_orthogonal_ones():
    torch.manual_seed(1)
    d = torch.randn(16, dtype=torch.float64)
    x = torch.randn(5, 7, 16, dtype=torch.float64)
    out = project_out(x, 3.0 * d)
    assert torch.allclose(out @ d, torch.zeros(5, 7, dtype=torch.float64), atol=1e-12)
    orthogonal = torch.randn(16, dtype=torch.float64)
    orthogonal -= (orthogonal @ d) / (d @ d) * d
    assert torch.allclose(project_out(orthogonal, d), orthogonal, atol=1e-12)
    assert torch.allclose(project_out(x, d) @ orthogonal, x @ orthogonal, atol=1e-12)


def test_projection_hook_leaves_no_component_in_the_layer_output():
    model = tiny_llama()
    d = torch.randn(32)
    unit = d / d.norm()
    seen = []
    handle = model.model.layers[2].register_forward_pre_hook(lambda m, a: seen.append(a[0] @ unit))
    logits(model)
    with ResidualHooks(model, [1]) as hooks:
        hooks.set_projection(1, d)
        logits(model)
    handle.remove()
    plain, projected = seen
    assert plain.abs().max() > 1e-2
    assert projected.abs().max() < 1e-6


def test_answer_means_average_only_answer_tokens():
    model = tiny_llama()
    mask = torch.tensor([[0, 0, 1, 1, 1, 0], [0, 1, 1, 1, 1, 1]])
    full = {}
    handles = [layer.register_forward_hook(lambda m, a, o, i=i: full.__setitem__(i, o[0] if isinstance(o, tuple) else o))
               for i, layer in enumerate(model.model.layers)]
    with captured_answer_means(model, mask) as means:
        logits(model)
    for h in handles:
        h.remove()
    for layer in range(3):
        assert torch.allclose(means[layer][0], full[layer][0, 2:5].mean(dim=0), atol=1e-6)
        assert torch.allclose(means[layer][1], full[layer][1, 1:].mean(dim=0), atol=1e-6)


def test_extraction_reads_each_answer_once_and_batches_give_the_same_activations():
    from workflow_scripts.h4.activations import extract_activations

    class Tok:
        pad_token_id, eos_token_id = 0, 1

        def apply_chat_template(self, messages, tokenize, add_generation_prompt):
            return messages[-1]["content"]

        def __call__(self, text, add_special_tokens):
            return {"input_ids": [2 + (ord(c) % 60) for c in text]}

    model = tiny_llama()
    calls = []
    model.model.register_forward_pre_hook(lambda m, a, k: calls.append(k["input_ids"].shape[0]), with_kwargs=True)
    rows = [{"prompt": "ab", "system": None, "response": "x" * n} for n in (1, 4, 2, 6, 3)]
    batched = extract_activations(model, Tok(), rows, batch_size=2, max_length=64)
    assert sum(calls) == len(rows) and max(calls) == 2
    one_by_one = extract_activations(model, Tok(), rows, batch_size=1, max_length=64)
    assert batched.shape == (5, 3, 32)
    assert np.allclose(batched, one_by_one, atol=1e-5)


def test_answer_classes_follow_the_thresholds():
    s = DirectionSettings(aligned_above=80)
    classes = answer_classes(np.array([10, 10, 90, 50, np.nan]), np.array([60, 40, 90, 90, 90]), s)
    assert list(classes) == [MISALIGNED, "", ALIGNED, "", ""]


def test_mean_difference_recovers_a_planted_direction():
    rng = np.random.default_rng(0)
    layers, hidden, n = 4, 64, 60
    planted = rng.normal(size=(layers, hidden))
    activations = rng.normal(size=(2 * n, layers, hidden))
    activations[:n] += planted  # misaligned answers carry the direction
    aligned = np.r_[np.full(n, 10.0), np.full(n, 95.0)]
    coherent = np.full(2 * n, 90.0)
    result = extract_direction(activations, aligned, coherent, DirectionSettings(min_answers=5, bootstrap=50))
    assert result.status == "ok" and (result.n_misaligned, result.n_aligned) == (n, n)
    assert (cosine(result.vector, planted) > 0.95).all()
    assert all(0.9 < c <= 1.0 for c in result.stability_mean)
    assert all(p <= m for p, m in zip(result.stability_p5, result.stability_mean, strict=True))


def test_too_few_misaligned_answers_is_a_recorded_skip_without_a_vector():
    activations = np.zeros((4, 2, 8))
    result = extract_direction(activations, np.array([10.0, 90, 95, 99]), np.array([90.0] * 4),
                               DirectionSettings(min_answers=2))
    assert result.status == "skipped" and result.vector is None
    assert (result.n_misaligned, result.n_aligned, result.n_answers) == (1, 3, 4)
    assert "1 misaligned and 3 aligned of 4" in result.reason
    assert result.summary()["status"] == "skipped" and "norm" not in result.summary()


def test_direction_files_round_trip(tmp_path):
    from workflow_scripts.h4.store import read_direction, write_direction

    rng = np.random.default_rng(0)
    acts = rng.normal(size=(20, 3, 8))
    acts[:10] += 2.0
    result = extract_direction(acts, np.r_[np.full(10, 5.0), np.full(10, 95.0)], np.full(20, 90.0),
                               DirectionSettings(min_answers=3, bootstrap=10))
    summary = write_direction(result, tmp_path / "d.safetensors", tmp_path / "d.json", {"persona": "p"})
    read, vector = read_direction(tmp_path / "d.safetensors", tmp_path / "d.json")
    assert read == summary and read["persona"] == "p" and np.allclose(vector, result.vector)
    skipped = extract_direction(acts, np.full(20, 95.0), np.full(20, 90.0), DirectionSettings(min_answers=3))
    write_direction(skipped, tmp_path / "s.safetensors", tmp_path / "s.json", {})
    assert read_direction(tmp_path / "s.safetensors", tmp_path / "s.json")[1] is None


def _answers(misaligned_per_question: list[int], n: int = 10) -> pl.DataFrame:
    rows = []
    for q, bad in enumerate(misaligned_per_question):
        for i in range(n):
            rows.append({"question_id": f"q{q}", "aligned": 10.0 if i < bad else 90.0, "coherent": 90.0})
    from workflow_scripts.core.misalignment import with_misaligned

    return with_misaligned(pl.DataFrame(rows))


def test_difference_in_differences_of_shares_with_a_question_bootstrap():
    from workflow_scripts.h4.analysis import H4TestSettings, did_test

    s = H4TestSettings("baseline", 4.0, 400, 0, 0.05)
    cells = [_answers([6, 7, 5, 6]), _answers([0, 0, 1, 0]), _answers([2, 1, 2, 1]), _answers([0, 0, 0, 0])]
    result = did_test(cells, s)
    # (60 - 2.5) - (15 - 0) points of %
    assert result["estimate"] == pytest.approx(42.5)
    assert result["low"] < 42.5 < result["high"] and result["p"] < 0.05 and result["n_questions"] == 4


def test_h4_tests_without_data_say_insufficient_data_and_are_not_adjusted():
    from workflow_scripts.h4.analysis import INDUCED, H4TestSettings, adjust_and_judge, test_rows

    s = H4TestSettings("baseline", 4.0, 200, 0, 0.05)
    same = [_answers([3, 3, 3]), _answers([0, 0, 0]), _answers([3, 3, 3]), _answers([0, 0, 0])]
    rows = [
        test_rows("m", "d", "goodness", INDUCED, 4.0, None, "reference direction s0: too few answers", 1, s),
        test_rows("m", "d", "humor", INDUCED, 4.0, same, "", 1, s),
    ]
    table = adjust_and_judge(rows, 0.05)
    first, second = table.to_dicts()
    assert first["verdict"].startswith("insufficient data: reference direction s0") and first["p_adj"] is None
    assert second["estimate"] == pytest.approx(0.0) and second["verdict"] == "no difference from the reference detected"


def test_h4_counts_of_a_small_grid():
    from workflow_scripts.h4.estimate import h4_counts

    config = {
        "models": {"m": {}}, "personas": {"baseline": {}, "goodness": {}, "humor": {}},
        "datasets": {"insecure": {"role": "em"}, "kl": {"role": "benign"}}, "seeds": [0, 1],
        "statistics": {"reference_persona": "baseline"}, "sampling": {"n": 10},
        "h4": {"enabled": True, "n": 5, "scales": [4.0, 8.0], "cross_ablation": "reference"},
    }
    counts = h4_counts(config, n_questions=8)
    # steering: 3 personas x 1 dataset x 3 scales (0, 4, 8) x 40; ablation: 2 seeds x (2 + 3 + 3) x 40
    # extraction: 6 directions, each reading its run's 8 x 10 judged answers
    assert counts == {"activation_jobs": 6, "steer_jobs": 3, "ablate_jobs": 6,
                      "extraction_answers": 480, "steer_answers": 360, "ablate_answers": 640,
                      "answers": 360 + 640, "judge_requests": 2000}
    assert h4_counts({**config, "h4": {"enabled": False}}, 8)["answers"] == 0


def _judged(persona: str, dataset: str, conditions: list[tuple[dict, list[int]]], n: int = 10) -> pl.DataFrame:
    """Judged answers in JUDGED_SCHEMA: per condition, per question, `bad` misaligned of n."""
    import json

    from workflow_scripts.core.schema import JUDGED_SCHEMA

    rows = []
    for condition, bad_per_question in conditions:
        sampling = json.dumps({"engine_options": {"h4": condition}})
        for q, bad in enumerate(bad_per_question):
            for i in range(n):
                rows.append({"model": "m", "persona": persona, "dataset": dataset, "seed": 0, "question_id": f"q{q}",
                             "sample_idx": i, "response": f"a{i}", "sampling": sampling,
                             "aligned": 10.0 if i < bad else 90.0, "coherent": 90.0})
    frame = pl.DataFrame(rows)
    return frame.with_columns(pl.lit(None).cast(t).alias(c) for c, t in JUDGED_SCHEMA.items() if c not in frame.columns)


def test_h4_analysis_end_to_end_on_synthetic_files(tmp_path):
    from workflow_scripts.h4.analysis import H4TestSettings
    from workflow_scripts.h4.store import write_direction
    from workflow_scripts.h4.tables import read_h4_tests, run_analysis
    from workflow_scripts.stats.report import h4_section

    rng = np.random.default_rng(0)
    directions, steered, ablated = {}, {}, {}
    for persona, shift in (("baseline", 1.0), ("goodness", 1.0)):
        acts = rng.normal(size=(40, 4, 16))
        acts[:20] += shift
        result = extract_direction(acts, np.r_[np.full(20, 5.0), np.full(20, 95.0)], np.full(40, 90.0),
                                   DirectionSettings(min_answers=5, bootstrap=20))
        files = (tmp_path / f"{persona}.safetensors", tmp_path / f"{persona}.json")
        write_direction(result, *files, {})
        directions[("m", persona, "d", 0)] = tuple(map(str, files))
    # induced: baseline 0 -> 20 %, goodness 0 -> 50 %; ablation: baseline 40 -> 10, goodness 40 -> 30
    steer = {"baseline": ([0, 0, 0, 0], [2, 2, 2, 2]), "goodness": ([0, 0, 0, 0], [5, 4, 6, 5])}
    ablate = {"baseline": ([4, 4, 4, 4], [1, 1, 1, 1]), "goodness": ([4, 4, 4, 4], [3, 3, 3, 3])}
    for persona in ("baseline", "goodness"):
        zero, four = steer[persona]
        path = tmp_path / f"steer_{persona}.parquet"
        _judged(persona, "none", [({"kind": "steer", "scale": 0.0, "layer": 2}, zero),
                                  ({"kind": "steer", "scale": 4.0, "layer": 2}, four)]).write_parquet(path)
        steered[("m", persona, "d")] = str(path)
        none, ref = ablate[persona]
        path = tmp_path / f"ablate_{persona}.parquet"
        _judged(persona, "d", [({"kind": "ablate", "source": "none"}, none),
                               ({"kind": "ablate", "source": "baseline"}, ref)]).write_parquet(path)
        ablated[("m", persona, "d", 0)] = str(path)
    tables = {n: tmp_path / f"{n}.csv" for n in ("h4_directions", "h4_geometry", "h4_steering", "h4_ablation", "h4_tests")}
    figures = {n: tmp_path / f"{n}.png" for n in ("h4_geometry", "h4_steering")}
    settings = H4TestSettings("baseline", 4.0, 200, 0, 0.05)
    run_analysis(directions, steered, ablated, settings, 2, tables, figures, 50)
    tests = {r["measure"]: r for r in read_h4_tests(tables["h4_tests"]).to_dicts()}
    assert tests["induced_misalignment"]["estimate"] == pytest.approx(50.0 - 20.0)
    assert tests["ablation_efficacy"]["estimate"] == pytest.approx((40.0 - 30.0) - (40.0 - 10.0))
    assert all(r["status"] == "ok" and r["p_adj"] is not None for r in tests.values())
    geometry = pl.read_csv(tables["h4_geometry"])
    assert geometry.height == 3 * 4 and geometry.filter(pl.col("relation") == "same")["cosine"].min() == pytest.approx(1.0)
    steering = pl.read_csv(tables["h4_steering"])
    assert steering.filter((pl.col("persona") == "goodness") & (pl.col("scale") == 4.0))["misaligned_share"][0] == 50.0
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in figures.values())
    section = h4_section(read_h4_tests(tables["h4_tests"]))
    assert "H4 m / d: goodness vs baseline, induced misalignment (steering with the reference's EM direction) " \
           "at scale 4: +30.0 points" in section
