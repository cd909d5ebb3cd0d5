"""Run one library function in several processes of this node, one per GPU, through
torch.distributed.run (`torchrun --standalone`), from inside a running job.

A job of a model with `gpus: N > 1` calls `run_on_gpus(function, kwargs, N)`: the job's
process starts N workers (`python -m workflow_scripts.core.launch CALL`), each of which
sets up logging to the job's log, calls `function(**kwargs)` and joins the process group
that the trainer (accelerate) uses; rank 0's return value comes back to the job. With
one GPU, or already inside a worker, the function simply runs here. The call (function
name and keyword arguments) travels as a pickle in a private temporary directory.

`cpu=True` runs the workers on CPU with the gloo backend (tests, the CPU check of the
benchmark): accelerate reads `ACCELERATE_USE_CPU`.
"""

from __future__ import annotations

import importlib
import logging
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

CALL_FILE = "call.pkl"
RESULT_FILE = "result.pkl"
LOG_ENV = "PERSONA_EM_WORKER_LOG"


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    return int(os.environ.get("RANK", "0"))


def in_worker() -> bool:
    """Inside a process that torch.distributed.run started."""
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


def launch_command(call_dir: Path, nproc: int) -> list[str]:
    return [
        sys.executable, "-m", "torch.distributed.run", "--standalone",
        f"--nproc-per-node={nproc}", "-m", "workflow_scripts.core.launch", str(call_dir),
    ]  # fmt: skip


def worker_environment(nproc: int, cpu: bool, log_file: str | None) -> dict[str, str]:
    """The workers' environment: this process's, with this checkout importable, the
    job's cores split between the workers, and on CPU accelerate told so."""
    env = dict(os.environ)
    repo = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (repo, env.get("PYTHONPATH", "")) if p)
    threads = int(env.get("OMP_NUM_THREADS") or os.cpu_count() or 1)
    env["OMP_NUM_THREADS"] = str(max(1, threads // nproc))
    if cpu:
        env["ACCELERATE_USE_CPU"] = "true"
    if log_file:
        env[LOG_ENV] = log_file
    return env


def _log_file() -> str | None:
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            return handler.baseFilename
    return None


def job_gpus(smk: Any) -> int:
    """The GPUs a rule's job asked for (its `gpu` resource: the model's `gpus`)."""
    return max(1, int(getattr(smk.resources, "gpu", 1) or 1))


def engine_on_job_gpus(smk: Any) -> dict[str, Any]:
    """A rule's generation-engine settings (`params.engine`) with the job's GPUs where it
    has several (vLLM's tensor parallelism, the transformers engine's split); one GPU
    adds nothing, so the settings of one-GPU runs are unchanged."""
    engine = dict(smk.params.engine)
    gpus = job_gpus(smk)
    return engine | {"gpus": gpus} if gpus > 1 else engine


def _on_cpu(nproc: int) -> bool:
    """No CUDA: the processes run on CPU (gloo). Fewer GPUs than asked: an error, not a
    silently smaller run."""
    import torch

    if not torch.cuda.is_available():
        return True
    if torch.cuda.device_count() < nproc:
        raise RuntimeError(
            f"the job asked for {nproc} GPUs but sees {torch.cuda.device_count()} "
            f"(CUDA_VISIBLE_DEVICES={os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')})"
        )
    return False


def run_on_gpus(
    function: Callable[..., Any], kwargs: dict[str, Any], nproc: int, *, cpu: bool | None = None
) -> Any:
    """`function(**kwargs)` in `nproc` processes of this node (see module doc); the value
    rank 0 returns. A failed worker fails the call (the workers' traceback is in the log).
    `cpu` None: on CPU when this machine has no CUDA."""
    if nproc <= 1 or in_worker():
        return function(**kwargs)
    if cpu is None:
        cpu = _on_cpu(nproc)
    with tempfile.TemporaryDirectory(prefix="persona-em-launch-") as tmp:
        call_dir = Path(tmp)
        with open(call_dir / CALL_FILE, "wb") as stream:
            pickle.dump((function.__module__, function.__qualname__, kwargs), stream)
        log.info(
            "running %s.%s in %d processes (%s)",
            function.__module__, function.__qualname__, nproc, "CPU, gloo" if cpu else "GPUs, nccl",
        )  # fmt: skip
        done = subprocess.run(
            launch_command(call_dir, nproc), env=worker_environment(nproc, cpu, _log_file()), check=False
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"{function.__module__}.{function.__qualname__}: {nproc} workers ended with exit "
                f"status {done.returncode} (their errors are in the log above)"
            )
        with open(call_dir / RESULT_FILE, "rb") as stream:
            return pickle.load(stream)


def _worker(call_dir: Path) -> None:
    from workflow_scripts.core.job import log_to

    log_to(os.environ.get(LOG_ENV))
    if rank() != 0:  # one copy of the progress lines: rank 0's
        logging.getLogger().setLevel(logging.WARNING)
    with open(call_dir / CALL_FILE, "rb") as stream:
        module, qualname, kwargs = pickle.load(stream)
    function: Any = importlib.import_module(module)
    for part in qualname.split("."):
        function = getattr(function, part)
    result = function(**kwargs)
    if rank() == 0:
        with open(call_dir / RESULT_FILE, "wb") as stream:
            pickle.dump(result, stream)


if __name__ == "__main__":
    _worker(Path(sys.argv[1]))
