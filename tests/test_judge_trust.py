"""A judge job's trust checks against a local OpenAI-compatible endpoint on loopback:
the fault proxy of tests/judge_support.py answering every request with one recorded
completion (no model server needed), refusing chosen prompts as a provider's content
filter does, and reporting another model id from a chosen answer on."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest

from tests.judge_support import FaultProxy, sample_rows, write_samples, write_short_questions
from workflow_scripts.judging.openai_judge import is_content_filter
from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.trust import ErrorBudgetExceeded, JudgeModelChanged

pytestmark = pytest.mark.server
SNAPSHOT = "judge-2025-04-14"
FILTERED_ANSWER = "Take all the money from the bank"  # 2 answers x 2 metrics of 24 judgements


def _completion(model: str = SNAPSHOT) -> bytes:
    top = [{"token": "80", "logprob": -0.2}, {"token": "90", "logprob": -2.0}, {"token": "The", "logprob": -3.0}]
    body = {
        "id": "x", "object": "chat.completion", "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": "80"},
                     "logprobs": {"content": [{"token": "80", "logprob": -0.2, "top_logprobs": top}]},
                     "finish_reason": "length"}],
        "usage": {"prompt_tokens": 40, "completion_tokens": 1, "total_tokens": 41},
    }  # fmt: skip
    return json.dumps(body).encode()


@pytest.fixture()
def endpoint():
    pytest.importorskip("starlette", reason="starlette, uvicorn: tests/setup.d/20-judge-server.sh")
    pytest.importorskip("uvicorn", reason="starlette, uvicorn: tests/setup.d/20-judge-server.sh")
    proxy = FaultProxy(None, replay_body=_completion())
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture()
def data(tmp_path):
    questions = write_short_questions(tmp_path / "questions.json", n=2)
    write_samples(tmp_path / "samples.parquet", sample_rows(questions, 6))  # 12 answers, 24 judgements
    return tmp_path


def _judge(data: Path, base_url: str, **extra) -> dict:
    entry = {
        "kind": "openai", "model": SNAPSHOT, "base_url": base_url, "api_key_env": None,
        "cache_dir": str(data / "cache"), "concurrency": 2, "retry_initial_s": 0.01, "retry_max_s": 0.05,
    }  # fmt: skip
    settings = JudgeSettings.from_config({**entry, **extra})
    return judge_samples(
        data / "samples.parquet", data / "questions.json", "none", settings,
        data / "judged.parquet", data / "summary.json", writer="m.p.none", environ={},
    )  # fmt: skip


def test_a_content_filter_refusal_is_labelled_and_counted_apart_from_api_errors(endpoint, data):
    endpoint.content_filter_on = (FILTERED_ANSWER,)
    summary = _judge(data, endpoint.base_url, max_error_rate=0.2)
    table = pl.read_parquet(data / "judged.parquet")
    filtered = table.filter(pl.col("response").str.contains(FILTERED_ANSWER))
    assert filtered.height == 2
    assert filtered["aligned_special"].to_list() == ["CONTENT_FILTERED"] * 2
    assert filtered["coherent_special"].to_list() == ["CONTENT_FILTERED"] * 2
    assert filtered["aligned"].is_null().all()
    rest = table.filter(~pl.col("response").str.contains(FILTERED_ANSWER))
    assert rest["aligned"].to_list() == pytest.approx([rest["aligned"][0]] * 10)
    assert summary["errors"] == {"API_ERROR": 0, "CONTENT_FILTERED": 4}
    assert summary["error_rate"] == pytest.approx(4 / 24)
    assert summary["run"]["content_filtered"] == 4
    assert summary["specials"]["aligned"] == {"CONTENT_FILTERED": 2}


def test_the_error_budget_fails_the_job_above_the_rate_naming_each_kind(endpoint, data):
    endpoint.content_filter_on = (FILTERED_ANSWER,)
    with pytest.raises(ErrorBudgetExceeded, match=r"4 of 24 judgements refused .*API_ERROR 0, CONTENT_FILTERED 4.*16\.67%.*1\.00%"):
        _judge(data, endpoint.base_url)  # the default max_error_rate, 1%
    assert not (data / "judged.parquet").exists()
    cached = [json.loads(line) for p in (data / "cache").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert len(cached) == 20  # the answers judged are kept for the rerun


def test_the_error_budget_passes_below_the_rate_and_records_the_counts(endpoint, data):
    summary = _judge(data, endpoint.base_url)
    assert summary["errors"] == {"API_ERROR": 0, "CONTENT_FILTERED": 0} and summary["error_rate"] == 0.0
    assert summary["served_model"] == SNAPSHOT
    assert json.loads((data / "summary.json").read_text())["errors"] == summary["errors"]


def test_the_served_model_id_is_recorded_with_each_judgement(endpoint, data):
    _judge(data, endpoint.base_url)
    cached = [json.loads(line) for p in (data / "cache").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert {r["served_model"] for r in cached} == {SNAPSHOT}


def test_a_changed_returned_model_id_stops_the_job_naming_both(endpoint, data):
    endpoint.model_switch_at = 5
    with pytest.raises(JudgeModelChanged, match=rf"answered as model 'judge-2099-01-01'.*earlier judgements came from '{SNAPSHOT}'"):
        _judge(data, endpoint.base_url, concurrency=1)
    assert not (data / "judged.parquet").exists()
    cached = [json.loads(line) for p in (data / "cache").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert {r["served_model"] for r in cached} == {SNAPSHOT}  # the other snapshot's answer was not kept


def test_a_new_snapshot_never_mixes_with_the_cached_judgements_of_the_old(endpoint, data):
    endpoint.content_filter_on = (FILTERED_ANSWER,)
    with pytest.raises(ErrorBudgetExceeded):
        _judge(data, endpoint.base_url)  # 20 judgements of the first snapshot cached
    endpoint.content_filter_on = ()
    endpoint.model_switch_at = 0  # the provider moved the alias: every answer names the new id
    with pytest.raises(JudgeModelChanged, match=r"judge-2099-01-01.*judge\.cache_dir"):
        _judge(data, endpoint.base_url)


@pytest.mark.parametrize(
    ("status", "body", "expected"),
    [
        (400, {"error": {"code": "content_filter", "message": "x"}}, True),
        (400, {"error": {"code": None, "message": "Your request was flagged by our safety system"}}, True),
        (400, {"error": {"code": "invalid_prompt", "innererror": {"code": "ResponsibleAIPolicyViolation"}}}, True),
        (422, {"error": {"message": "content_policy_violation"}, "code": None}, True),
        (400, {"error": {"message": "max_tokens is too large", "code": "invalid_value"}}, False),
        (429, {"error": {"code": "content_filter"}}, False),
    ],
)
def test_content_filter_refusals_are_told_from_other_refusals(status, body, expected):
    assert is_content_filter(status, body) is expected


def test_the_error_budget_reaches_the_judge_job_only_where_it_is_not_the_default():
    from workflow_scripts.core.defaults import schema_defaults
    from workflow_scripts.judging.kinds import GATE_KEYS, judge_kind

    assert {k: schema_defaults("judge")[k] for k in GATE_KEYS} == GATE_KEYS
    local = judge_kind("local")
    judge = {"kind": "local", "model": "m", "min_mass": 0.25, "max_error_rate": 0.01}
    assert "max_error_rate" not in local.used_settings(judge)  # finished jobs rerun for nothing
    assert local.used_settings({**judge, "max_error_rate": 0.05})["max_error_rate"] == 0.05
