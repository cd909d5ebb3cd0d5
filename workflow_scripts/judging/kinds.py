"""Every judge kind, declared once: where its jobs run and how it is opened.

A kind says which environment its judge jobs use, how many GPUs and whether the
internet they need, whether it is paid per token and needs an API key, whether its
model is a model of the config (built by the models stage, so compute nodes without
internet have it), which scoring methods it supports, which `judge:` keys its jobs
read (the judge rules carry only those, so editing another kind's setting reruns
nothing), and the function that opens it.
The Snakefile (resources, environment, the API-key check before any job), the config
checks, the settings, the judge job and the cost estimate all read this table.

Adding a kind is one entry here plus its module, whose `open_judge(settings, judge_id,
judge_model_dir, environ, server_log)` is a context manager that yields
`(judge, ledger or None)`; the judge has `judge(tasks, on_result)` like the others.
This module imports nothing heavy: the Snakefile reads it at parse time.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class JudgeKind:
    name: str
    description: str
    opener: str  # "module:function" of the context manager that opens this judge
    env: str  # envs/<env>.yaml of the judge rule
    gpus: int  # GPUs of a judge job unless `judge.gpus` says otherwise
    internet: bool  # its jobs call a remote endpoint
    billed: bool  # paid per token (the cost estimate and the budget apply)
    api_key: bool  # reads an API key from the environment (`judge.api_key_env`)
    config_model: str  # "required" | "optional" | "never": judge.model names a config model
    methods: tuple[str, ...] = ("logprob", "text")
    keys: tuple[str, ...] = ()  # `judge:` keys its jobs read, beyond COMMON_KEYS

    def open(self) -> Any:
        module, _, function = self.opener.partition(":")
        return getattr(importlib.import_module(module), function)

    def serves_config_model(self, judge: dict, models: dict) -> bool:
        """Whether the judge model is the base-model directory of a config model."""
        if self.config_model == "required":
            return True
        if self.config_model == "never":
            return False
        hf_id = (judge.get("server") or {}).get("hf_id")
        return judge["model"] in models and not hf_id

    def used_settings(self, judge: dict) -> dict:
        """The part of the `judge:` block this kind's jobs read; a gate (GATE_KEYS) only
        where it differs from its default, so that adding one reruns no finished job."""
        used = {key: judge[key] for key in (*COMMON_KEYS, *self.keys) if key in judge}
        for key, default in GATE_KEYS.items():
            if key in judge and judge[key] != default:
                used[key] = judge[key]
        return used


# `judge:` keys every kind reads (the judge job: cache, scoring; `gpus` sets resources only)
COMMON_KEYS = ("kind", "model", "method", "min_mass", "cache_dir")
# `judge:` keys that gate a job (it fails or passes) but never change its table, with
# their defaults (config/schema.yaml); a job reads the default where its params lack one
GATE_KEYS = {"max_error_rate": 0.01}
# an OpenAI-compatible endpoint's requests and the cost ledger
ENDPOINT_KEYS = (
    "concurrency",
    "max_retries",
    "timeout_s",
    "retry_initial_s",
    "retry_max_s",
    "budget_usd",
    "price_per_mtok_input",
    "price_per_mtok_output",
)


KINDS: dict[str, JudgeKind] = {
    kind.name: kind
    for kind in (
        JudgeKind(
            name="openai",
            description="any OpenAI-compatible endpoint (OpenAI, OpenRouter, a vLLM server)",
            opener="workflow_scripts.judging.openai_judge:open_judge",
            env="train",
            gpus=0,
            internet=True,
            billed=True,
            api_key=True,
            config_model="never",
            keys=("base_url", "api_key_env", *ENDPOINT_KEYS),
        ),
        JudgeKind(
            name="local",
            description="a config model scored with transformers in the judge job",
            opener="workflow_scripts.judging.local_judge:open_judge",
            env="train",
            gpus=0,
            internet=False,
            billed=False,
            api_key=False,
            config_model="required",
            methods=("logprob",),
            keys=("batch_size",),
        ),
        JudgeKind(
            name="vllm_server",
            description="a vLLM OpenAI server started by the judge job on its GPU",
            opener="workflow_scripts.judging.server:open_judge",
            env="vllm",
            gpus=1,
            internet=False,
            billed=False,
            api_key=False,
            config_model="optional",
            keys=("server", *ENDPOINT_KEYS),
        ),
    )
}


class UnknownJudgeKind(ValueError):
    pass


def judge_kind(name: str, where: str = "judge.kind") -> JudgeKind:
    try:
        return KINDS[name]
    except KeyError:
        raise UnknownJudgeKind(
            f"{where}: unknown judge kind '{name}'; expected one of: {', '.join(KINDS)}"
        ) from None
