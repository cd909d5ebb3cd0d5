"""The `judge:` block of the config as one typed object (defaults as in config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.kinds import UnknownJudgeKind, judge_kind

METHODS = ("logprob", "text")


@dataclass(frozen=True)
class JudgeSettings:
    kind: str
    model: str
    base_url: str | None = None
    api_key_env: str | None = "OPENAI_API_KEY"
    method: str = "logprob"
    min_mass: float = 0.25
    concurrency: int = 32
    max_retries: int = 8
    timeout_s: float = 60.0
    retry_initial_s: float = 1.0
    retry_max_s: float = 60.0
    budget_usd: float | None = None
    price_per_mtok_input: float = 0.4
    price_per_mtok_output: float = 1.6
    batch_size: int = 8
    cache_dir: str = "results/judge_cache"
    gpus: int | None = None
    server: dict = field(default_factory=dict)

    @classmethod
    def from_config(cls, entry: dict[str, Any], where: str = "judge") -> JudgeSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        settings = cls(**entry)
        try:
            kind = judge_kind(settings.kind, f"{where}.kind")
        except UnknownJudgeKind as err:
            raise InputError(str(err)) from None
        if settings.method not in METHODS:
            raise InputError(f"{where}.method: unknown method '{settings.method}'; expected one of: {', '.join(METHODS)}")
        if settings.method not in kind.methods:
            raise InputError(
                f"{where}.method: the {kind.name} judge supports {', '.join(kind.methods)}, "
                f"not '{settings.method}'"
            )
        return settings

    def public(self) -> dict:
        """Everything worth recording; holds the key's variable name, never a key."""
        return {f.name: getattr(self, f.name) for f in fields(self)}
