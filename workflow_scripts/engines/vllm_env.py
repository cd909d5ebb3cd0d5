"""Running the vLLM sampler from a plain-venv workflow: vLLM pins its own torch and
transformers, so on a cluster without conda it lives in a venv of its own, named by
PERSONA_EM_VLLM_PYTHON (that venv's python). A rule script started in the workflow's
venv hands its work to that interpreter (envs/README.md)."""

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from workflow_scripts.core.io_utils import read_json

VLLM_PYTHON_VAR = "PERSONA_EM_VLLM_PYTHON"


def handoff_python(engine: str, environ: Mapping[str, str], vllm_importable: bool) -> str | None:
    """The interpreter to run the vLLM sampler in, or None to run it here."""
    if engine != "vllm" or vllm_importable:
        return None
    python = environ.get(VLLM_PYTHON_VAR)
    if not python:
        raise RuntimeError(
            f"sampling.engine is vllm but vllm is not importable here and {VLLM_PYTHON_VAR} "
            "is unset; use --sdm conda, or set it to the python of a vLLM venv (envs/README.md)"
        )
    if not Path(python).exists():
        raise RuntimeError(f"{VLLM_PYTHON_VAR}: {python} does not exist")
    return python


def vllm_importable() -> bool:
    return importlib.util.find_spec("vllm") is not None


def run_module_in(python: str, module: str, params: dict, log_file: str) -> None:
    """Run `python -m module PARAMS.json` with this repository on PYTHONPATH, appending
    its output to the rule's log; raise if it fails."""
    repo = Path(__file__).resolve().parents[2]
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(repo), os.environ.get("PYTHONPATH")])),
    }
    env.pop("VIRTUAL_ENV", None)
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as fh:
        json.dump(params, fh)
    try:
        with open(log_file, "a") as log:
            result = subprocess.run(
                [python, "-m", module, fh.name], env=env, stdout=log, stderr=subprocess.STDOUT
            )
    finally:
        os.unlink(fh.name)
    if result.returncode != 0:
        raise RuntimeError(
            f"{python} -m {module} failed (exit {result.returncode}); see {log_file}"
        )


def run_stage(
    module: str, params: dict, run: Callable[[dict], Any], engine_kind: str, log_file: str
) -> Any:
    """Run a generation stage (sampling, persona generation) here, or, where the engine
    is vLLM and vLLM lives in a venv of its own, as `python -m module PARAMS.json` in
    that venv."""
    python = handoff_python(engine_kind, os.environ, vllm_importable())
    if python:
        return run_module_in(python, module, params, log_file)
    return run(params)


def run_handed_off(run: Callable[[dict], Any]) -> None:
    """Entry point of a handed-off run: `python -m workflow_scripts.<stage> PARAMS.json`."""
    from workflow_scripts.core.job import log_to

    log_to(None)
    run(read_json(sys.argv[1]))
