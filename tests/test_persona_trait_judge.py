"""Trait-expression judge: score from a 0..100 distribution; the local judge's
probabilities are exact for digit-split numbers."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.persona.trait_judge import (
    LocalJudge,
    OpenAIJudge,
    score_from_distribution,
    trait_messages,
)


def test_score_is_renormalised_mean_over_integers():
    score, mass = score_from_distribution({85: 0.6, 90: 0.2, 150: 0.1}, min_mass=0.25)
    assert mass == pytest.approx(0.8)
    assert score == pytest.approx((85 * 0.6 + 90 * 0.2) / 0.8)


def test_score_missing_below_min_mass():
    assert score_from_distribution({50: 0.2}, min_mass=0.25) == (None, 0.2)
    assert score_from_distribution({}, min_mass=0.0) == (None, 0.0)


def test_trait_messages_carry_traits_question_and_answer():
    [message] = trait_messages("1: I am kind.", "How are you?", "Great!")
    assert "1: I am kind." in message["content"]
    assert "[QUESTION START]\nHow are you?\n[QUESTION END]" in message["content"]
    assert "[ANSWER START]\nGreat!\n[ANSWER END]" in message["content"]


def brute_force(model, tokenizer, judge, messages, k):
    from workflow_scripts.chat import render

    ids = tokenizer(render(tokenizer, messages), return_tensors="pt", add_special_tokens=False)[
        "input_ids"
    ]
    digits = tokenizer(str(k), add_special_tokens=False)["input_ids"]
    full = torch.cat([ids, torch.tensor([digits])], dim=1)
    with torch.no_grad():
        logprobs = torch.log_softmax(model(full).logits[0].float(), dim=-1)
    n = ids.shape[1]
    total = sum(float(logprobs[n - 1 + j, t]) for j, t in enumerate(digits))
    p_digit = float(logprobs[-1, judge.digit_ids].exp().sum())
    return math.exp(total) * (1 - p_digit)


def test_local_judge_probabilities_are_exact_for_digit_tokenizers(toy_model_dir):  # noqa: F811
    from workflow_scripts.models import load_model, load_tokenizer

    model, tokenizer = load_model(toy_model_dir, device="cpu"), load_tokenizer(toy_model_dir)
    judge = LocalJudge(model, tokenizer, chunk=40)
    messages = trait_messages("1: I am kind.", "Hi?", "Hello there.")
    dist = judge(messages)
    assert sorted(dist) == list(range(101))
    assert 0 < sum(dist.values()) <= 1
    assert len(tokenizer("42", add_special_tokens=False)["input_ids"]) == 2  # digits split
    for k in (0, 7, 42, 100):
        assert dist[k] == pytest.approx(brute_force(model, tokenizer, judge, messages, k), rel=1e-4)


def test_openai_judge_keeps_integer_tokens_only(monkeypatch):
    monkeypatch.setenv("TEST_JUDGE_KEY", "sk-test")
    judge = OpenAIJudge("gpt-test", "http://127.0.0.1:9", "TEST_JUDGE_KEY", 0, 1.0)
    top = [
        SimpleNamespace(token=t, logprob=math.log(p))
        for t, p in [("80", 0.5), (" 80", 0.1), ("90", 0.2), ("CODE", 0.1), ("101", 0.05)]
    ]
    response = SimpleNamespace(
        choices=[
            SimpleNamespace(logprobs=SimpleNamespace(content=[SimpleNamespace(top_logprobs=top)]))
        ]
    )
    calls = []

    def create(**kwargs):
        calls.append(kwargs)
        return response

    monkeypatch.setattr(judge.client.chat.completions, "create", create)
    dist = judge([{"role": "user", "content": "rate"}])
    assert dist == pytest.approx({80: 0.6, 90: 0.2})
    assert (
        calls[0]["max_tokens"] == 1
        and calls[0]["top_logprobs"] == 20
        and calls[0]["temperature"] == 0
    )


def test_openai_judge_needs_its_key_variable(monkeypatch):
    monkeypatch.delenv("MISSING_JUDGE_KEY", raising=False)
    with pytest.raises(RuntimeError, match="MISSING_JUDGE_KEY is not set"):
        OpenAIJudge("gpt-test", None, "MISSING_JUDGE_KEY", 0, 1.0)


def test_digit_tree_and_per_integer_scoring_agree(toy_model_dir):  # noqa: F811
    from workflow_scripts.models import load_model, load_tokenizer

    model, tokenizer = load_model(toy_model_dir, device="cpu"), load_tokenizer(toy_model_dir)
    judge = LocalJudge(model, tokenizer, chunk=101)
    assert judge.tree
    messages = trait_messages("1: I am kind.", "Hi?", "Hello there.")
    tree = judge(messages)
    judge.tree = False  # the path of tokenizers with multi-digit tokens
    generic = judge(messages)
    for k in range(101):
        assert tree[k] == pytest.approx(generic[k], rel=1e-4, abs=1e-12)
