"""Pure parts of the judge: logprob scoring, text parsing, response parsing, retry
classification, backoff, prompt filling, cache keys and the budget ledger."""

from __future__ import annotations

import json
import math
import random

import httpx2 as httpx
import openai
import pytest

from workflow_scripts.judging.accounting import Ledger, Prices, max_prompt_tokens
from workflow_scripts.judging.logprob import (
    CODE,
    REFUSAL,
    UNPARSEABLE,
    distribution_from_top_logprobs,
    judge_distribution,
    number_of,
    score_from_text,
    score_from_top_logprobs,
)
from workflow_scripts.judging.openai_judge import (
    MalformedResponse,
    backoff_s,
    is_fatal,
    is_retryable,
    parse_completion,
    request_options,
    retry_after_s,
)
from workflow_scripts.judging.tasks import fill_template, task_key


def test_logprob_score_ignores_non_numeric_tokens():
    dist = {"85": 0.6, "90": 0.2, "CODE": 0.2}
    assert score_from_top_logprobs(dist) == pytest.approx((85 * 0.6 + 90 * 0.2) / 0.8)


def test_score_is_missing_below_min_mass_and_present_at_it():
    assert score_from_top_logprobs({"50": 0.24, "The": 0.76}) is None
    assert score_from_top_logprobs({"50": 0.25, "The": 0.75}) == pytest.approx(50.0)
    assert score_from_top_logprobs({"50": 0.1, "The": 0.9}, min_mass=0.05) == pytest.approx(50.0)


def test_only_integers_0_to_100_count_and_same_numbers_add_up():
    assert [number_of(t) for t in ("0", "100", " 85", "85\n", "101", "-5", "8.5", "½", "٣")] == [
        0, 100, 85, 85, None, None, None, None, None,
    ]  # fmt: skip
    dist = {"85": 0.3, " 85": 0.3, "101": 0.3, "10": 0.1}
    assert score_from_top_logprobs(dist) == pytest.approx((85 * 0.6 + 10 * 0.1) / 0.7)


@pytest.mark.parametrize(
    ("dist", "reason"),
    [
        ({"CODE": 0.9, "85": 0.05}, CODE),
        ({"REF": 0.7, "I": 0.1}, REFUSAL),  # a tokenizer's first piece of REFUSAL
        ({"REFUSAL": 0.1, "CODE": 0.6, "The": 0.1}, CODE),
        ({"CODE": 0.3, "The": 0.1}, CODE),  # mass beyond the listed tokens counts for nothing
        ({"REF": 0.3, "USAL": 0.05, "I": 0.1}, REFUSAL),  # a clear refusal, most mass unlisted
        ({"The": 0.5, "A": 0.3, "CODE": 0.1}, UNPARSEABLE),
        ({"C": 0.9}, UNPARSEABLE),  # one letter is no label
        ({}, UNPARSEABLE),
    ],
)
def test_missing_score_says_why(dist, reason):
    score = judge_distribution(dist)
    assert (score.value, score.special) == (None, reason)


def test_scored_distribution_reports_its_mass():
    score = judge_distribution({"20": 0.5, "40": 0.25, "x": 0.25})
    assert (score.value, score.special, score.mass) == (pytest.approx(80 / 3), None, 0.75)


def test_top_logprobs_become_probabilities_and_duplicates_add_up():
    entries = [
        {"token": "85", "logprob": math.log(0.5)},
        {"token": "85", "logprob": math.log(0.1)},
        {"token": "CODE", "logprob": math.log(0.2)},
    ]
    assert distribution_from_top_logprobs(entries) == pytest.approx({"85": 0.6, "CODE": 0.2})


@pytest.mark.parametrize(
    ("reply", "value", "special"),
    [("85", 85.0, None), (" 7.", 7.0, None), ("100", 100.0, None), ("150", None, UNPARSEABLE),
     ("1234", None, UNPARSEABLE), ("CODE", None, CODE), ("Refusal", None, REFUSAL), ("I think 40", None, UNPARSEABLE)],
)  # fmt: skip
def test_text_mode_parses_a_leading_number_or_label(reply, value, special):
    score = score_from_text(reply)
    assert (score.value, score.special) == (value, special)


def _completion(top=None, content="8", usage=True) -> str:
    choice = {"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "length"}
    if top is not None:
        choice["logprobs"] = {"content": [{"token": content, "logprob": -0.1, "top_logprobs": top}]}
    body = {"choices": [choice]}
    if usage:
        body["usage"] = {"prompt_tokens": 100, "completion_tokens": 1}
    return json.dumps(body)


def test_parse_completion_reads_top_logprobs_and_usage():
    body = _completion([{"token": "8", "logprob": math.log(0.75)}, {"token": "CODE", "logprob": math.log(0.25)}])
    dist, reply, usage = parse_completion(body, "logprob")
    assert dist == pytest.approx({"8": 0.75, "CODE": 0.25})
    assert (reply, usage) == ("8", {"prompt_tokens": 100, "completion_tokens": 1})


@pytest.mark.parametrize(
    "body",
    ['{"choices": [{"message": {"content": "8', "[1, 2]", '{"error": {"message": "overloaded"}}',
     '{"choices": []}', _completion(None), _completion([])],
)  # fmt: skip
def test_unusable_bodies_are_malformed_and_retried(body):
    with pytest.raises(MalformedResponse) as err:
        parse_completion(body, "logprob")
    assert is_retryable(err.value)


def test_text_method_needs_no_logprobs():
    dist, reply, _ = parse_completion(_completion(None, content="42"), "text")
    assert (dist, reply) == ({"42": 1.0}, "42")
    assert request_options("text") == {"max_tokens": 8, "temperature": 0}
    assert request_options("logprob") == {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": 20}


def _status_error(status: int, headers=None) -> openai.APIStatusError:
    request = httpx.Request("POST", "http://127.0.0.1/v1/chat/completions")
    response = httpx.Response(status, headers=headers or {}, request=request)
    client = openai.OpenAI(api_key="x", base_url="http://127.0.0.1/v1")
    return client._make_status_error(f"HTTP {status}", body=None, response=response)


@pytest.mark.parametrize(
    ("status", "retryable", "fatal"),
    [(429, True, False), (500, True, False), (503, True, False), (408, True, False),
     (400, False, False), (422, False, False), (401, False, True), (403, False, True), (404, False, True)],
)  # fmt: skip
def test_status_codes_are_retried_recorded_or_fatal(status, retryable, fatal):
    error = _status_error(status)
    assert (is_retryable(error), is_fatal(error)) == (retryable, fatal)


def test_timeouts_and_connection_errors_are_retried():
    request = httpx.Request("POST", "http://127.0.0.1/v1")
    assert is_retryable(openai.APITimeoutError(request=request))
    assert is_retryable(openai.APIConnectionError(request=request))
    assert not is_retryable(ValueError("bug"))


def test_retry_after_header_is_honoured_and_capped():
    assert retry_after_s(_status_error(429, {"retry-after": "3"})) == 3.0
    assert retry_after_s(_status_error(429, {"retry-after-ms": "250"})) == 0.25
    assert retry_after_s(_status_error(429, {"retry-after": "99999"})) == 120.0
    assert retry_after_s(_status_error(429, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"})) == 0.0
    assert retry_after_s(ValueError()) == 0.0


def test_backoff_is_full_jitter_doubling_up_to_the_cap():
    rng = random.Random(0)
    draws = {attempt: [backoff_s(attempt, 1.0, 10.0, rng) for _ in range(2000)] for attempt in (1, 3, 6)}
    assert min(draws[1]) >= 0.0 and max(draws[1]) <= 1.0
    assert max(draws[3]) <= 4.0 and max(draws[3]) > 3.5
    assert max(draws[6]) <= 10.0 and max(draws[6]) > 9.0  # 32 capped at 10


def test_template_is_filled_once_so_braces_in_answers_survive():
    template = "Q: {question}\nA: {answer}\nJSON like {\"score\": 1} is fine"
    filled = fill_template(template, "What is {answer}?", "I say {question}")
    assert filled == "Q: What is {answer}?\nA: I say {question}\nJSON like {\"score\": 1} is fine"


def test_task_key_changes_with_every_part_of_its_identity():
    base = ("gpt-4.1-mini", "logprob", "aligned", "T {question} {answer}", "Q", "A")
    keys = {task_key(*base)}
    for i in range(len(base)):
        changed = list(base)
        changed[i] = changed[i] + "x"
        keys.add(task_key(*changed))
    assert len(keys) == len(base) + 1
    assert task_key(*base) == task_key(*base)


def test_ledger_refuses_a_request_that_could_pass_the_budget():
    prices = Prices(input_per_mtok=1_000_000.0, output_per_mtok=0.0)  # 1 USD a token
    prompt = "x" * 10
    bound = max_prompt_tokens(prompt)  # 10 bytes + overhead
    ledger = Ledger(prices, budget_usd=2 * bound + 10)
    first, second = ledger.reserve(prompt, 1), ledger.reserve(prompt, 1)
    assert first == second == pytest.approx(bound)
    assert ledger.reserve(prompt, 1) is None and ledger.refused_by_budget == 1
    ledger.release(first)
    assert ledger.bill({"prompt_tokens": 5, "completion_tokens": 1}) == pytest.approx(5.0)
    assert ledger.reserve(prompt, 1) is not None  # 5 spent + bound reserved + bound < budget
    assert ledger.summary()["cost_usd"] == 5.0
    ledger.bill(None)
    assert ledger.usage_missing == 1 and ledger.responses == 2


def test_the_self_served_judge_listens_on_loopback_with_20_logprobs():
    from workflow_scripts.judging.server import vllm_command

    command = vllm_command("results/qwen/base/model", "qwen-judge", 8011, 0.8, max_model_len=4096, extra_args=["--seed", "0"])
    assert command[1:3] == ["-m", "vllm.entrypoints.openai.api_server"]
    flags = dict(zip(command[3::2], command[4::2], strict=True))
    assert flags == {
        "--model": "results/qwen/base/model", "--served-model-name": "qwen-judge", "--host": "127.0.0.1", "--port": "8011",
        "--gpu-memory-utilization": "0.8", "--max-logprobs": "20", "--max-model-len": "4096", "--seed": "0",
    }  # fmt: skip
    assert "--api-key" not in command  # the key goes through the environment, never argv
