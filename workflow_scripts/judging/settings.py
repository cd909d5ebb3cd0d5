"""The `judge:` block of the config as one typed object (defaults as in config/schema.yaml)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.judging.kinds import UnknownJudgeKind, judge_kind

METHODS = ("logprob", "text")


_DEFAULTS = schema_defaults("judge")  # config/schema.yaml: the only defaults


@dataclass(frozen=True)
class JudgeSettings:
    kind: str
    model: str
    base_url: str | None = _DEFAULTS["base_url"]
    api_key_env: str | None = _DEFAULTS["api_key_env"]
    method: str = _DEFAULTS["method"]
    min_mass: float = _DEFAULTS["min_mass"]
    max_error_rate: float = _DEFAULTS["max_error_rate"]
    concurrency: int = _DEFAULTS["concurrency"]
    max_retries: int = _DEFAULTS["max_retries"]
    timeout_s: float = _DEFAULTS["timeout_s"]
    retry_initial_s: float = _DEFAULTS["retry_initial_s"]
    retry_max_s: float = _DEFAULTS["retry_max_s"]
    budget_usd: float | None = _DEFAULTS["budget_usd"]
    price_per_mtok_input: float = _DEFAULTS["price_per_mtok_input"]
    price_per_mtok_output: float = _DEFAULTS["price_per_mtok_output"]
    batch_size: int = _DEFAULTS["batch_size"]
    cache_dir: str = _DEFAULTS["cache_dir"]
    gpus: int | None = _DEFAULTS["gpus"]
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
