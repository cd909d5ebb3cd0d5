"""Trait-expression judging through the workflow's judging backends."""

from __future__ import annotations

import pytest

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.persona.trait_judge import backend_scorer, score_record, trait_prompt


def test_trait_prompt_carries_traits_question_and_answer_verbatim():
    prompt = trait_prompt("1: I am kind.", "How are you?", "Great! {answer} stays")
    assert "expresses the following character traits:\n\n1: I am kind.\n" in prompt
    assert "[QUESTION START]\nHow are you?\n[QUESTION END]" in prompt
    assert "[ANSWER START]\nGreat! {answer} stays\n[ANSWER END]" in prompt


def test_score_record_logprob_text_and_errors():
    record = {"dist": {"80": 0.5, " 90": 0.25, "CODE": 0.25}, "reply": "80"}
    value, mass = score_record(record, "logprob", 0.25)
    assert mass == pytest.approx(0.75) and value == pytest.approx((80 * 0.5 + 90 * 0.25) / 0.75)
    assert score_record({"dist": {"80": 0.1}}, "logprob", 0.25) == (None, pytest.approx(0.1))
    assert score_record({"dist": {"x": 1.0}, "reply": "73 because"}, "text", 0.25) == (73.0, 1.0)
    assert score_record({"error": "HTTP 400"}, "logprob", 0.25) == (None, 0.0)


class FakeBackend:
    def __init__(self):
        self.tasks = []

    def judge(self, tasks, on_record, handle_signals=False):
        self.tasks += tasks
        for task in tasks:
            if "skip me" not in task.prompt:
                on_record({"key": task.key, "dist": {str(len(task.prompt) % 101): 1.0}, "reply": ""})


def test_backend_scorer_keeps_prompt_order_and_missing_records():
    backend = FakeBackend()
    prompts = ["a prompt", "skip me", "another prompt"]
    scores = backend_scorer(backend, "logprob", 0.25)(prompts)
    assert scores == [(len(prompts[0]) % 101, 1.0), (None, 0.0), (len(prompts[2]) % 101, 1.0)]
    assert [t.prompt for t in backend.tasks] == prompts
    assert len({t.key for t in backend.tasks}) == 3


def test_local_judge_backend_scores_trait_prompts(toy_model_dir):  # noqa: F811
    from workflow_scripts.judging.local_judge import LocalJudge

    backend = LocalJudge(toy_model_dir, "toy", batch_size=2, device="cpu")
    prompts = [trait_prompt("1: I am kind.", "Hi?", a) for a in ("Hello.", "Go away.", "Hi there!")]
    scores = backend_scorer(backend, "logprob", 0.0)(prompts)
    assert len(scores) == 3
    for value, mass in scores:
        assert 0 < mass <= 1 and 0 <= value <= 100
