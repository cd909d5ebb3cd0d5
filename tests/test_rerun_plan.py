"""Snakemake's rerun plan after a config edit: a rule's params carry only the settings
its engine or judge kind reads, so editing an unused one reruns nothing.

Each case builds a finished run of the offline grid without running anything (empty
outputs, then `--touch`, which records every job's params) and dry-runs edits on it.
"""

from __future__ import annotations

import copy
import os
import re
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
OFFLINE = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
DIRECTORY_OUTPUT = re.compile(r"/(adapter|model|analysis_checkpoints)$")


def snakemake(workdir: Path, config: dict, *args: str) -> str:
    config_file = workdir / f"config-{abs(hash(yaml.safe_dump(config)))}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"),
         "--directory", str(workdir), "--configfile", str(config_file), *args],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "OPENAI_API_KEY": "unused"},
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def finished_run(workdir: Path, config: dict) -> Path:
    """A workdir where every output of `config` exists and is up to date."""
    (workdir / "resources").symlink_to(REPO / "resources")
    summary = snakemake(workdir, config, "--summary")
    for line in summary.splitlines():
        path = line.split("\t")[0]
        if not path.startswith("results/"):
            continue
        target = workdir / path
        if DIRECTORY_OUTPUT.search(path):
            target.mkdir(parents=True, exist_ok=True)
        else:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.touch()
    snakemake(workdir, config, "--touch", "--cores", "1")
    assert planned(workdir, config) == set()
    return workdir


def planned(workdir: Path, config: dict) -> set[str]:
    """The rules a dry-run would run."""
    output = snakemake(workdir, config, "-n")
    return set(re.findall(r"^rule (\w+):", output, flags=re.MULTILINE))


def edited(base: dict, **changes) -> dict:
    config = copy.deepcopy(base)
    for dotted, value in changes.items():
        *parents, last = dotted.split("__")
        node = config
        for key in parents:
            node = node.setdefault(key, {})
        node[last] = value
    return config


def test_offline_default_plans_nothing_after_editing_unused_settings(tmp_path):
    """Transformers engine, local judge: the vLLM options, the vLLM chunk size and the
    endpoint settings of other judge kinds are unused."""
    workdir = finished_run(tmp_path, OFFLINE)
    unused = edited(
        OFFLINE,
        sampling__vllm={"max_model_len": 2048, "gpu_memory_utilization": 0.5, "max_loras": 2},
        persona_training__vllm_chunk_size=7,
        judge__concurrency=3,
        judge__base_url="http://localhost:1/v1",
        judge__budget_usd=1.0,
        judge__server={"max_model_len": 1024},
    )
    assert planned(workdir, unused) == set()
    used = edited(OFFLINE, sampling__batch_size=3, judge__batch_size=3)
    assert {"sample_persona", "judge"} <= planned(workdir, used)


def test_vllm_engine_and_openai_judge_ignore_transformers_and_local_settings(tmp_path):
    config = edited(
        OFFLINE,
        sampling__engine="vllm",
        judge={"kind": "openai", "model": "gpt-4.1-mini"},
    )
    workdir = finished_run(tmp_path, config)
    unused = edited(
        config, sampling__batch_size=3, persona_training__chunk_size=3, judge__batch_size=3
    )
    assert planned(workdir, unused) == set()
    used = edited(config, sampling__vllm={"max_model_len": 2048}, judge__concurrency=3)
    assert {"sample_persona", "persona_teacher", "judge"} <= planned(workdir, used)


def test_vllm_server_judge_ignores_the_api_key_variable_and_base_url(tmp_path):
    config = edited(OFFLINE, judge={"kind": "vllm_server", "model": "smollm2-135m"})
    workdir = finished_run(tmp_path, config)
    unused = edited(
        config,
        judge__api_key_env="OTHER_KEY",
        judge__base_url="http://localhost:1/v1",
        judge__batch_size=3,
    )
    assert planned(workdir, unused) == set()
    assert "judge" in planned(workdir, edited(config, judge__server={"max_model_len": 1024}))
