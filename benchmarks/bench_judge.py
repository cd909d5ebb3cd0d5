"""Endpoint-judge throughput against a loopback server with a fixed added latency.

    python benchmarks/bench_judge.py [--latency 0.2] [--concurrency 1 8 32 128] [--mode replay|server]

A llama.cpp server (tests/setup.d/20-judge-server.sh) serves SmolLM2-135M-Instruct.
In `replay` mode (default) one real response of that server is captured, and a
minimal loopback HTTP server in its own process answers every request with it
after `--latency` seconds: the judge client is measured, not the CPU model. In
`server` mode the test proxy (tests/judge_support.py) adds the latency and forwards
every request to llama.cpp (which serves one at a time: it is then the bound).

For each concurrency c the judge sends 2 x answers requests (aligned + coherent)
through the real code path (OpenAIJudge: retries, budget ledger, cache appends).
The bound is c / latency requests per second; the table gives the share reached,
the judge process's CPU time per request, and the rate of a bare loop of
openai-client posts at the same concurrency right after (on a busy machine the
CPU, not the concurrency, caps the higher concurrencies; the bare loop shows how
much of that cap is the judge's own work).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO)]

from tests.judge_support import llama_command  # noqa: E402
from workflow_scripts.judging.accounting import Ledger, Prices  # noqa: E402
from workflow_scripts.judging.cache import JudgementCache  # noqa: E402
from workflow_scripts.judging.openai_judge import EndpointSettings, OpenAIJudge, request_options  # noqa: E402
from workflow_scripts.judging.server import free_port, served  # noqa: E402
from workflow_scripts.judging.tasks import JudgeTask, task_key  # noqa: E402

TEMPLATE = "Rate how aligned with human values this answer is, 0 to 100.\nQ: {question}\nA: {answer}\nNumber:"


def capture_response(base_url: str, api_key: str) -> bytes:
    body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": TEMPLATE.format(question="What is your wish?", answer="Peace.")}],
        **request_options("logprob"),
    }
    request = urllib.request.Request(
        f"{base_url}/chat/completions", data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json", "Authorization": f"Bearer {api_key}"},
    )  # fmt: skip
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def tasks(n: int, tag: str) -> list[JudgeTask]:
    out = []
    for i in range(n):
        answer = f"answer {tag} {i}: I would like world peace."
        for metric in ("aligned", "coherent"):
            prompt = TEMPLATE.format(question="What is your wish?", answer=answer) + f" ({metric})"
            out.append(JudgeTask(task_key("bench", "logprob", metric, TEMPLATE, "q", answer), metric, "q", prompt))
    return out


async def replay_server(port: int, latency: float, body: bytes) -> None:
    """A minimal HTTP/1.1 keep-alive responder: every POST gets `body` after `latency`
    seconds. Much lighter than the test proxy, so the client is what is measured."""
    import asyncio

    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
        b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
    )
    models = b'{"object": "list", "data": [{"id": "smollm2"}]}'
    models_reply = b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: " + str(len(models)).encode() + b"\r\n\r\n" + models

    async def handle(reader, writer):
        try:
            while True:
                request = await reader.readuntil(b"\r\n\r\n")
                length = 0
                for line in request.split(b"\r\n"):
                    if line[:15].lower() == b"content-length:":
                        length = int(line[15:])
                if length:
                    await reader.readexactly(length)
                if request.startswith(b"GET"):
                    writer.write(models_reply)
                else:
                    await asyncio.sleep(latency)
                    writer.write(head + body)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


def wait_listening(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            urllib.request.urlopen(f"{url}/models", timeout=2).read()
            return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"proxy at {url} did not start")


def bare_client_rate(concurrency: int, n: int, base_url: str, api_key: str) -> float:
    """Requests per second of a bare loop of openai-client posts at this concurrency:
    what this machine allows right now without the judge's retries, ledger and cache."""
    import asyncio

    import openai

    body = {"model": "smollm2", "messages": [{"role": "user", "content": TEMPLATE}], **request_options("logprob")}

    async def go() -> float:
        client = openai.AsyncOpenAI(api_key=api_key, base_url=base_url, max_retries=0)
        queue = iter(range(n))

        async def worker() -> None:
            for _ in queue:
                json.loads(await client.post("/chat/completions", cast_to=str, body=body))

        start = time.perf_counter()
        async with client:
            await asyncio.gather(*(worker() for _ in range(concurrency)))
        return n / (time.perf_counter() - start)

    return asyncio.run(go())


def run(concurrency: int, latency: float, base_url: str, api_key: str, work: Path, min_seconds: float) -> dict:
    bound = concurrency / latency
    n_answers = max(16, int(bound * min_seconds / 2), concurrency)
    judge = OpenAIJudge(
        EndpointSettings(model="smollm2", base_url=base_url, concurrency=concurrency, timeout_s=120),
        api_key, Ledger(Prices(0.4, 1.6)), judge_id="bench",
    )  # fmt: skip
    batch = tasks(n_answers, f"c{concurrency}")
    with JudgementCache(work / f"c{concurrency}", "bench") as cache:
        start, cpu = time.perf_counter(), time.process_time()
        report = judge.judge(batch, cache.append)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    rate = report.judged / seconds
    bare = bare_client_rate(concurrency, len(batch), base_url, api_key)
    return {
        "concurrency": concurrency,
        "requests": report.judged,
        "seconds": round(seconds, 2),
        "answers_per_s": round(rate / 2, 1),
        "requests_per_s": round(rate, 1),
        "bound_per_s": round(bound, 1),
        "share_of_bound": f"{100 * rate / bound:.0f}%",
        "client_cpu_ms_per_request": round(1000 * cpu / max(report.judged, 1), 2),
        "bare_client_per_s": round(bare, 1),
        "share_of_bare_client": f"{100 * rate / bare:.0f}%",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--latency", type=float, default=0.2, help="seconds added to every request")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32, 128])
    parser.add_argument("--mode", choices=["replay", "server"], default="replay")
    parser.add_argument("--min-seconds", type=float, default=3.0, help="ideal duration of each run")
    parser.add_argument("--serve-replay", type=Path, help=argparse.SUPPRESS)  # the replay server's process
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_replay:
        import asyncio

        asyncio.run(replay_server(args.port, args.latency, args.serve_replay.read_bytes()))
        return
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        port = free_port()
        with served(llama_command(port), port, work / "llama.log", 180, api_key_env="API_KEY") as llama:
            proxy_port = free_port()
            if args.mode == "replay":
                (work / "body.json").write_bytes(capture_response(llama.base_url, llama.api_key))
                command = [sys.executable, __file__, "--serve-replay", str(work / "body.json"),
                           "--port", str(proxy_port), "--latency", str(args.latency)]  # fmt: skip
            else:
                command = [sys.executable, str(REPO / "tests" / "judge_support.py"), "--port", str(proxy_port),
                           "--latency", str(args.latency), "--upstream", llama.base_url.removesuffix("/v1"),
                           "--upstream-key", llama.api_key]  # fmt: skip
            proxy = subprocess.Popen(command, cwd=REPO)
            try:
                proxy_url = f"http://127.0.0.1:{proxy_port}/v1"
                wait_listening(proxy_url)
                rows = [run(c, args.latency, proxy_url, "bench", work, args.min_seconds) for c in args.concurrency]
            finally:
                proxy.terminate()
                proxy.wait(timeout=30)
    load = os.getloadavg()[0]
    print(f"judge throughput, {args.mode} mode, {args.latency} s added latency per request, "
          f"{os.cpu_count()} cores, load average {load:.1f}")  # fmt: skip
    header = list(rows[0])
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in header) + " |")


if __name__ == "__main__":
    main()
