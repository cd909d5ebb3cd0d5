"""A self-served judge: the judge job starts an OpenAI-compatible server (vLLM) for
the judge model on its own GPU, judges through it on loopback, and stops it.

For clusters whose compute nodes have no internet: the model is served from a
local directory (a config model built by the models stage) or from the Hugging
Face cache (`HF_HUB_OFFLINE=1` is set for the server). The server only listens on
127.0.0.1 and requires a random per-job key (passed through its environment,
never written), so other users of a shared node cannot use it.

`served` runs any server command; `vllm_command` builds vLLM's. Tests run the
same lifecycle with llama.cpp's server.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

STOP_GRACE_S = 30.0


class ServerError(RuntimeError):
    pass


@dataclass(frozen=True)
class RunningServer:
    base_url: str  # http://127.0.0.1:PORT/v1
    api_key: str
    pid: int


def free_port(preferred: int | None = None) -> int:
    """`preferred` when nothing listens on it, else any free port. SO_REUSEADDR as
    servers set it: a port a stopped server left in TIME_WAIT counts as free."""
    for port in ([preferred] if preferred else []) + [0]:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
            return sock.getsockname()[1]
    raise ServerError("no free TCP port on 127.0.0.1")


def vllm_command(
    model: str,
    served_name: str,
    port: int,
    gpu_memory_utilization: float = 0.85,
    max_model_len: int | None = None,
    extra_args: Sequence[str] = (),
    python: str | None = None,
) -> list[str]:
    """vLLM's OpenAI-compatible server for the judge: loopback only, 20 logprobs (the
    logprob method). `python` is an interpreter with vLLM (default: this one)."""
    command = [
        python or sys.executable, "-m", "vllm.entrypoints.openai.api_server",
        "--model", model,
        "--served-model-name", served_name,
        "--host", "127.0.0.1",
        "--port", str(port),
        "--gpu-memory-utilization", str(gpu_memory_utilization),
        "--max-logprobs", "20",
    ]  # fmt: skip
    if max_model_len:
        command += ["--max-model-len", str(max_model_len)]
    return command + list(extra_args)


@contextlib.contextmanager
def served(
    command: Sequence[str],
    port: int,
    log_path: str | os.PathLike,
    startup_timeout_s: float = 900.0,
    api_key_env: str = "VLLM_API_KEY",
    env: dict | None = None,
) -> Iterator[RunningServer]:
    """Start `command` (a server listening on 127.0.0.1:`port`), wait until
    /v1/models answers, yield it, and stop it (SIGTERM to its process group, then
    SIGKILL) however the block ends. The server's output goes to `log_path`."""
    api_key = secrets.token_urlsafe(24)
    child_env = {**(env if env is not None else os.environ), api_key_env: api_key}
    child_env.setdefault("HF_HUB_OFFLINE", "1")
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    base_url = f"http://127.0.0.1:{port}/v1"
    with log_path.open("ab") as server_log:
        log.info("starting judge server: %s (log: %s)", " ".join(command), log_path)
        process = subprocess.Popen(
            list(command), stdout=server_log, stderr=subprocess.STDOUT, env=child_env, start_new_session=True
        )
        try:
            _wait_ready(process, base_url, api_key, startup_timeout_s, log_path)
            yield RunningServer(base_url, api_key, process.pid)
        finally:
            stop(process)


def stop(process: subprocess.Popen, grace_s: float = STOP_GRACE_S) -> int | None:
    """SIGTERM the server's process group, SIGKILL it after `grace_s`."""
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    # children that outlived their parent (e.g. vLLM's engine process)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(process.pid, signal.SIGKILL)
    log.info("judge server stopped (exit status %s)", process.returncode)
    return process.returncode


def _wait_ready(process: subprocess.Popen, base_url: str, api_key: str, timeout_s: float, log_path: Path) -> None:
    deadline = time.monotonic() + timeout_s
    request = urllib.request.Request(f"{base_url}/models", headers={"Authorization": f"Bearer {api_key}"})
    while True:
        status = process.poll()
        if status is not None:
            raise ServerError(
                f"judge server exited with status {status} before it was ready; "
                f"last lines of {log_path}:\n{_tail(log_path)}"
            )
        try:
            with urllib.request.urlopen(request, timeout=5) as response:
                if response.status == 200:
                    log.info("judge server ready at %s", base_url)
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
            pass
        if time.monotonic() > deadline:
            raise ServerError(
                f"judge server not ready at {base_url} after {timeout_s:.0f} s "
                f"(judge.server.startup_timeout_s); last lines of {log_path}:\n{_tail(log_path)}"
            )
        time.sleep(0.5)


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


@contextlib.contextmanager
def open_judge(
    settings: Any,
    judge_id: str,
    judge_model_dir: str | os.PathLike | None,
    environ: Mapping[str, str],
    server_log: str | os.PathLike,
) -> Iterator[tuple[Any, Any]]:
    """Judge kind `vllm_server`: a vLLM OpenAI server started on this job's GPU for the
    judge model, judged through like any endpoint, and stopped."""
    from workflow_scripts.judging.openai_judge import (
        OpenAIJudge,
        endpoint_settings,
        ledger_for,
        redacting,
    )

    server = settings.server
    source = str(judge_model_dir) if judge_model_dir is not None else (server.get("hf_id") or settings.model)
    port = free_port(server.get("port"))
    command = vllm_command(
        source,
        settings.model,
        port,
        gpu_memory_utilization=server.get("gpu_memory_utilization", 0.85),
        max_model_len=server.get("max_model_len"),
        extra_args=server.get("extra_args") or (),
        python=server.get("python"),
    )
    ledger = ledger_for(settings)
    timeout = server.get("startup_timeout_s", 900.0)
    with served(command, port, server_log, timeout, env=dict(environ)) as running, redacting(running.api_key):
        yield OpenAIJudge(endpoint_settings(settings, running.base_url), running.api_key, ledger, judge_id), ledger
