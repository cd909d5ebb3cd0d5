"""A judge behind any OpenAI-compatible chat endpoint (OpenAI, OpenRouter, a vLLM or
llama.cpp server): async with bounded concurrency, retried, budgeted, accounted.

Retries (tenacity): 429, 408, 409, 5xx, timeouts, connection errors, and 200
answers that are not usable (a body that is not JSON, no choices, no logprobs),
with exponential backoff and full jitter, at least as long as a `Retry-After`
header asks. 400 / 422 (the endpoint refuses this request) give a record that is not
cached: CONTENT_FILTERED when the provider's content filter refused it (its error code or
message says so), API_ERROR otherwise. 401 / 403 / 404 stop the run: the
key, the permission or the model name is wrong, and no retry will mend it.

SIGTERM / SIGINT (optional): no new request is sent; the requests in flight finish
and are recorded; then `JudgingIncomplete` is raised.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import random
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import openai
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.accounting import Ledger, Prices
from workflow_scripts.judging.logprob import (
    API_ERROR,
    CONTENT_FILTERED,
    distribution_from_top_logprobs,
)
from workflow_scripts.judging.tasks import JudgeTask, judgement_record

log = logging.getLogger(__name__)

TOP_LOGPROBS = 20
TEXT_MAX_TOKENS = 8
MAX_RETRY_AFTER_S = 120.0
MAX_CONSECUTIVE_FAILURES = 20  # tasks that exhausted their retries in a row: the endpoint is down


class MalformedResponse(Exception):
    """An HTTP 200 whose body is not a usable completion (retried)."""


class JudgeEndpointError(RuntimeError):
    """The endpoint rejects the run itself (key, permission, model): no retry helps."""


class JudgingIncomplete(RuntimeError):
    """Some tasks were not judged (signal, budget, or retries exhausted)."""


class _Interrupted(Exception):
    pass


@dataclass(frozen=True)
class EndpointSettings:
    model: str
    base_url: str | None = None
    method: str = "logprob"  # "logprob" | "text"
    concurrency: int = 32
    max_retries: int = 8
    timeout_s: float = 60.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0


@dataclass
class RunReport:
    tasks: int = 0
    judged: int = 0
    api_errors: int = 0  # refused with HTTP 400/422 (content-filtered ones included)
    content_filtered: int = 0
    failed: int = 0
    not_sent: int = 0
    stop_reason: str | None = None  # None | "signal" | "budget" | "failures" | "endpoint"
    attempts: dict = field(default_factory=dict)  # outcome of every HTTP attempt

    def as_dict(self) -> dict:
        return dict(self.__dict__)


def request_options(method: str) -> dict:
    """The sampling options of one judge request (docs/methods.md, Judging)."""
    if method == "logprob":
        return {"max_tokens": 1, "temperature": 0, "logprobs": True, "top_logprobs": TOP_LOGPROBS}
    if method == "text":
        return {"max_tokens": TEXT_MAX_TOKENS, "temperature": 0}
    raise ValueError(f"judge.method: unknown method '{method}'; expected logprob or text")


def parse_completion(body: str, method: str) -> tuple[dict[str, float], str, dict | None]:
    """(distribution, reply text, usage) of a chat completion body; MalformedResponse
    when it has none to give. The text method's distribution is {reply: 1.0}."""
    dist, reply, usage, _ = parse_completion_with_model(body, method)
    return dist, reply, usage


def parse_completion_with_model(body: str, method: str) -> tuple[dict[str, float], str, dict | None, str | None]:
    """As `parse_completion`, plus the `model` the endpoint says answered (None if absent)."""
    try:
        data = json.loads(body)
    except json.JSONDecodeError as err:
        raise MalformedResponse(f"body is not JSON ({err.msg} at column {err.colno})") from None
    if not isinstance(data, dict):
        raise MalformedResponse("body is not a JSON object")
    if data.get("error"):
        raise MalformedResponse(f"error in a 200 body: {str(data['error'])[:200]}")
    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
    served = data.get("model") if isinstance(data.get("model"), str) else None
    try:
        choice = data["choices"][0]
        reply = choice["message"].get("content") or ""
    except (KeyError, IndexError, TypeError, AttributeError):
        raise _WithUsage("no choices[0].message in the body", usage) from None
    if method == "text":
        return {reply: 1.0}, reply, usage, served
    try:
        entries = choice["logprobs"]["content"][0]["top_logprobs"]
        dist = distribution_from_top_logprobs(entries)
    except (KeyError, IndexError, TypeError, ValueError):
        raise _WithUsage("no logprobs.content[0].top_logprobs in the body", usage) from None
    if not dist:
        raise _WithUsage("empty top_logprobs in the body", usage)
    return dist, reply, usage, served


class _WithUsage(MalformedResponse):
    """Malformed, but billed: the usage is still accounted."""

    def __init__(self, message: str, usage: dict | None):
        super().__init__(message)
        self.usage = usage


def attempt_outcome(exc: BaseException | None) -> str:
    if exc is None:
        return "ok"
    if isinstance(exc, openai.APITimeoutError):
        return "timeout"
    if isinstance(exc, openai.APIConnectionError):
        return "connection"
    if isinstance(exc, openai.APIStatusError):
        return str(exc.status_code)
    if isinstance(exc, MalformedResponse):
        return "malformed"
    return type(exc).__name__


# error codes and message phrases with which providers refuse a request for its content
# (OpenAI, Azure OpenAI, OpenRouter, Anthropic's and Google's OpenAI-compatible endpoints)
CONTENT_FILTER_CODES = ("content_filter", "content_policy_violation", "responsibleaipolicyviolation", "moderation")
CONTENT_FILTER_PHRASES = ("content filter", "content management policy", "content policy", "flagged", "moderation", "safety system")


def is_content_filter(status: int, body: object, message: str = "") -> bool:
    """Whether an HTTP 400/422 answer is the provider's content filter refusing the
    request (its error code, inner error code or message says so)."""
    if status not in (400, 422):
        return False
    texts = [message]
    error = body.get("error", body) if isinstance(body, dict) else body
    if isinstance(error, dict):
        texts.append(str(error.get("message") or ""))
        for code in (error.get("code"), error.get("type"), (error.get("innererror") or {}).get("code")
                     if isinstance(error.get("innererror"), dict) else None):
            if isinstance(code, str) and code.lower() in CONTENT_FILTER_CODES:
                return True
    elif isinstance(error, str):
        texts.append(error)
    text = " ".join(texts).lower()
    return any(phrase in text for phrase in (*CONTENT_FILTER_PHRASES, *CONTENT_FILTER_CODES))


def refusal_reason(exc: BaseException) -> str:
    """CONTENT_FILTERED or API_ERROR for a request the endpoint refused (HTTP 400/422)."""
    status = getattr(exc, "status_code", 0)
    return CONTENT_FILTERED if is_content_filter(status, getattr(exc, "body", None), str(exc)) else API_ERROR


def is_retryable(exc: BaseException) -> bool:
    if isinstance(exc, (openai.APIConnectionError, MalformedResponse)):  # timeouts included
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in (408, 409, 429) or exc.status_code >= 500
    return False


def is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, openai.APIStatusError) and exc.status_code in (401, 403, 404)


def retry_after_s(exc: BaseException | None) -> float:
    """Seconds a `Retry-After` / `retry-after-ms` header asks to wait (0 when none)."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or {}
    try:
        if "retry-after-ms" in headers:
            return min(float(headers["retry-after-ms"]) / 1000, MAX_RETRY_AFTER_S)
        if "retry-after" in headers:
            return min(float(headers["retry-after"]), MAX_RETRY_AFTER_S)
    except ValueError:
        pass  # an HTTP date: fall back to the backoff
    return 0.0


def backoff_s(attempt: int, initial: float, maximum: float, rng: random.Random = random) -> float:  # type: ignore[assignment]
    """Full jitter: uniform in [0, min(maximum, initial * 2**(attempt-1))]."""
    return rng.uniform(0.0, min(maximum, initial * 2 ** max(0, attempt - 1)))


class OpenAIJudge:
    def __init__(self, settings: EndpointSettings, api_key: str, ledger: Ledger, judge_id: str | None = None):
        self.settings = settings
        self.method = settings.method
        self.judge_id = judge_id or settings.model
        self.ledger = ledger
        self._api_key = api_key
        self._options = request_options(settings.method)

    def judge(
        self,
        tasks: Sequence[JudgeTask],
        on_record: Callable[[dict], None],
        handle_signals: bool = False,
    ) -> RunReport:
        """Judge `tasks`, calling `on_record` with each record as it arrives (records
        with an 'error' field are API errors, not judgements). Raises
        JudgeEndpointError or JudgingIncomplete when the run cannot finish."""
        report = RunReport(tasks=len(tasks))
        fatal: list[BaseException] = []
        asyncio.run(self._run(tasks, on_record, report, fatal, handle_signals))
        report.attempts = dict(self.ledger.attempts)
        if fatal:
            raise JudgeEndpointError(_endpoint_message(fatal[0], self.settings)) from None
        if report.api_errors and report.api_errors == report.tasks:
            raise JudgeEndpointError(
                f"judge endpoint {self.settings.base_url or 'api.openai.com'} refused every request "
                f"for model '{self.settings.model}' ({report.api_errors} x HTTP 400/422); "
                f"does it support method '{self.method}'? (`judge.method: text` needs no logprobs)"
            )
        return report

    async def _run(self, tasks, on_record, report: RunReport, fatal: list, handle_signals: bool) -> None:
        self._stop = asyncio.Event()
        self._consecutive_failures = 0
        loop = asyncio.get_running_loop()
        signals = (signal.SIGTERM, signal.SIGINT) if handle_signals else ()
        if threading.current_thread() is not threading.main_thread():
            signals = ()
        for sig in signals:
            loop.add_signal_handler(sig, self._on_signal, report, sig)
        client = openai.AsyncOpenAI(
            api_key=self._api_key,
            base_url=self.settings.base_url,
            max_retries=0,
            timeout=self.settings.timeout_s,
        )
        queue = iter(tasks)
        progress = _Progress(len(tasks))
        try:
            async with client:
                workers = [
                    self._worker(client, queue, on_record, report, fatal, progress)
                    for _ in range(min(self.settings.concurrency, max(1, len(tasks))))
                ]
                await asyncio.gather(*workers)
        finally:
            for sig in signals:
                loop.remove_signal_handler(sig)
        report.not_sent = report.tasks - report.judged - report.api_errors - report.failed

    def _on_signal(self, report: RunReport, sig: int) -> None:
        if not self._stop.is_set():
            log.warning("signal %s: no new requests; waiting for the ones in flight", signal.Signals(sig).name)
        report.stop_reason = report.stop_reason or "signal"
        self._stop.set()

    def _halt(self, report: RunReport, reason: str) -> None:
        report.stop_reason = report.stop_reason or reason
        self._stop.set()

    async def _worker(self, client, queue, on_record, report: RunReport, fatal: list, progress) -> None:
        while not self._stop.is_set():
            task = next(queue, None)
            if task is None:
                return
            reservation = self.ledger.reserve(task.prompt, self._options["max_tokens"])
            if reservation is None:
                log.warning("budget: %.4f USD spent of %.4f; sending no more requests", self.ledger.spent_usd, self.ledger.budget_usd)
                self._halt(report, "budget")
                return
            try:
                record = await self._judge_with_retries(client, task)
            except _Interrupted:
                continue
            except Exception as exc:
                if is_fatal(exc):
                    fatal.append(exc)
                    self._halt(report, "endpoint")
                    return
                if isinstance(exc, (openai.BadRequestError, openai.UnprocessableEntityError)):
                    report.api_errors += 1
                    record = self._error_record(task, exc)
                    report.content_filtered += record["special"] == CONTENT_FILTERED
                    on_record(record)
                    continue
                report.failed += 1
                self._consecutive_failures += 1
                log.error("task %s (%s, %s): gave up after %d attempts: %s", task.key[:12], task.metric, task.question_id, self.settings.max_retries + 1, _short(exc))
                if self._consecutive_failures >= MAX_CONSECUTIVE_FAILURES:
                    log.error("%d tasks in a row failed after all retries: stopping", self._consecutive_failures)
                    self._halt(report, "failures")
                continue
            finally:
                self.ledger.release(reservation)
            self._consecutive_failures = 0
            report.judged += 1
            on_record(record)
            progress.tick(self.ledger)

    async def _judge_with_retries(self, client, task: JudgeTask) -> dict:
        attempts = 0
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.max_retries + 1),
            wait=self._wait,
            retry=retry_if_exception(is_retryable),
            sleep=self._sleep,
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                attempts += 1
                return await self._judge_once(client, task, attempts)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _judge_once(self, client, task: JudgeTask, attempt: int) -> dict:
        try:
            # The client's low-level post: auth, base URL and HTTP errors as openai's
            # exceptions, without the per-call parameter transformation of
            # `chat.completions.create` (most of the client's CPU time per request).
            body = await client.post(
                "/chat/completions",
                cast_to=str,
                body={"model": self.settings.model, "messages": [{"role": "user", "content": task.prompt}], **self._options},
            )
            try:
                dist, reply, usage, served = parse_completion_with_model(body, self.method)
            except _WithUsage as err:
                self.ledger.bill(err.usage)
                raise
        except Exception as exc:
            self.ledger.attempts[attempt_outcome(exc)] += 1
            raise
        self.ledger.attempts["ok"] += 1
        cost = self.ledger.bill(usage)
        return judgement_record(
            task,
            self.judge_id,
            self.method,
            dist=dist,
            reply=reply,
            usage={k: (usage or {}).get(k) for k in ("prompt_tokens", "completion_tokens")},
            cost_usd=cost,
            attempts=attempt,
            served_model=served,
        )

    def _error_record(self, task: JudgeTask, exc: BaseException) -> dict:
        return judgement_record(
            task, self.judge_id, self.method, special=refusal_reason(exc), error=_short(exc)
        )

    def _wait(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        jitter = backoff_s(state.attempt_number, self.settings.retry_initial_s, self.settings.retry_max_s)
        return max(jitter, retry_after_s(exc))

    async def _sleep(self, seconds: float) -> None:
        """Back off, but give up at once when the run is stopping."""
        try:
            await asyncio.wait_for(self._stop.wait(), timeout=seconds)
        except TimeoutError:
            return
        raise _Interrupted()


class _Progress:
    def __init__(self, total: int, every_s: float = 30.0):
        self.total = total
        self.done = 0
        self.every_s = every_s
        self.start = self.last = time.monotonic()

    def tick(self, ledger: Ledger) -> None:
        self.done += 1
        now = time.monotonic()
        if now - self.last >= self.every_s or self.done == self.total:
            self.last = now
            rate = self.done / max(now - self.start, 1e-9)
            log.info("judged %d/%d (%.1f/s), %.4f USD so far", self.done, self.total, rate, ledger.spent_usd)


def _short(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {str(exc)[:300]}"


def _endpoint_message(exc: BaseException, settings: EndpointSettings) -> str:
    where = settings.base_url or "api.openai.com"
    status = getattr(exc, "status_code", "?")
    hint = {
        401: "the API key is missing or wrong (judge.api_key_env names the variable that holds it)",
        403: "the key has no access to this model or endpoint",
        404: f"the endpoint has no model '{settings.model}' (judge.model) or the base_url is wrong",
    }.get(status, "")
    return f"judge endpoint {where}: HTTP {status} for model '{settings.model}': {hint}"


NO_KEY = "EMPTY"  # for endpoints without authentication (api_key_env: null)


def api_key_from_env(settings: Any, environ: Mapping[str, str]) -> str:
    if settings.api_key_env is None:
        return NO_KEY
    value = environ.get(settings.api_key_env)
    if not value:
        raise InputError(
            f"judge.api_key_env: the environment variable {settings.api_key_env} is not set; "
            "it must hold the judge endpoint's API key"
        )
    return value


class RedactSecret(logging.Filter):
    """Replace a secret's value in every log line (a server may echo what it got)."""

    def __init__(self, secret: str):
        super().__init__()
        self.secret = secret

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secret and self.secret != NO_KEY:
            message = record.getMessage()
            if self.secret in message:
                record.msg, record.args = message.replace(self.secret, "***"), ()
        return True


@contextlib.contextmanager
def redacting(secret: str) -> Iterator[None]:
    handlers = logging.getLogger().handlers
    redact = RedactSecret(secret)
    for handler in handlers:
        handler.addFilter(redact)
    try:
        yield
    finally:
        for handler in handlers:
            handler.removeFilter(redact)


def endpoint_settings(settings: Any, base_url: str | None) -> EndpointSettings:
    """The request settings of an OpenAI-compatible judge from the `judge:` block."""
    return EndpointSettings(
        base_url=base_url,
        model=settings.model,
        method=settings.method,
        concurrency=settings.concurrency,
        max_retries=settings.max_retries,
        timeout_s=settings.timeout_s,
        retry_initial_s=settings.retry_initial_s,
        retry_max_s=settings.retry_max_s,
    )


def ledger_for(settings: Any) -> Ledger:
    return Ledger(Prices(settings.price_per_mtok_input, settings.price_per_mtok_output), settings.budget_usd)


@contextlib.contextmanager
def open_judge(
    settings: Any,
    judge_id: str,
    judge_model_dir: str | os.PathLike | None,
    environ: Mapping[str, str],
    server_log: str | os.PathLike,
) -> Iterator[tuple[OpenAIJudge, Ledger]]:
    """Judge kind `openai`: an endpoint at `judge.base_url` with the key from the environment."""
    ledger = ledger_for(settings)
    api_key = api_key_from_env(settings, environ)
    with redacting(api_key):
        yield OpenAIJudge(endpoint_settings(settings, settings.base_url), api_key, ledger, judge_id), ledger
