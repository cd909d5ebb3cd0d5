"""The start of every job: its log, its threads, its seeds.

Every rule script calls `start_job(snakemake)` first, and the command-line entry points
(a handed-off generation run, the judge CLI) call `log_to`, so all jobs log the same way:
INFO and above to the rule's log file, warnings also to stderr, chatty HTTP and hub
libraries quieted. A bad input (`InputError`: the file and the place) ends the job with
its one-line message in the log and on stderr, not a traceback.
"""

from __future__ import annotations

import atexit
import logging
import os
import random
import sys
from pathlib import Path
from typing import Any

from workflow_scripts.core.io_utils import InputError

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Libraries that log every HTTP request or file lock at INFO.
QUIET_LOGGERS = ("httpx", "httpcore", "openai", "urllib3", "filelock", "huggingface_hub")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def log_to(path: str | Path | None) -> None:
    """Send INFO and above to `path` (the rule's `log:`), warnings also to stderr."""
    handlers: list[logging.Handler] = []
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING if path else logging.INFO)
    handlers.append(stderr)
    logging.basicConfig(level=logging.INFO, format=LOG_FORMAT, handlers=handlers, force=True)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    if sys.excepthook is not report_input_error:
        report_input_error.fallback = sys.excepthook  # type: ignore[attr-defined]
        sys.excepthook = report_input_error


def report_input_error(kind: type[BaseException], error: BaseException, tb: Any) -> None:
    """Uncaught exceptions of a job: a bad input is one line, anything else a traceback."""
    if issubclass(kind, InputError):
        logging.getLogger("persona_em").error("%s", error)
        return
    report_input_error.fallback(kind, error, tb)  # type: ignore[attr-defined]


report_input_error.fallback = sys.__excepthook__  # type: ignore[attr-defined]


def use_threads(threads: int | None) -> None:
    """Give numeric libraries exactly the job's cores. More threads than cores (torch's
    default on a shared node) makes OpenMP spin-wait: 10x slower on a busy 2-core
    machine. Torch is not imported for this: a job that never uses it (statistics,
    figures) should not pay its import; the variables set the count when it is."""
    if not threads:
        return
    count = str(max(1, int(threads)))
    for variable in THREAD_VARIABLES:
        os.environ[variable] = count
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(int(count))


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and (when loaded) torch's generators."""
    random.seed(seed)
    if "numpy" in sys.modules:
        sys.modules["numpy"].random.seed(seed % 2**32)
    if "torch" in sys.modules:
        sys.modules["torch"].manual_seed(seed)


def log_peak_gpu_memory() -> None:
    """At the end of a job that used CUDA: its peak GPU memory in the log (the per-rule
    table of a GPU run reads it). Nothing for a job that never initialised CUDA."""
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_initialized():
        return
    gib = 2**30
    logging.getLogger("persona_em").info(
        "peak GPU memory: %.3f GiB allocated, %.3f GiB reserved (%s)",
        torch.cuda.max_memory_allocated() / gib,
        torch.cuda.max_memory_reserved() / gib,
        torch.cuda.get_device_name(),
    )


def start_job(smk: Any, seed: int | None = None) -> None:
    """Common start of a rule's script: log file, thread count and, where the job's
    randomness is not already seeded by its own settings, a seed."""
    log_to(smk.log[0] if smk.log else None)
    use_threads(getattr(smk, "threads", None))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    if seed is not None:
        seed_everything(int(seed))
    # Registered after logging's own exit handler, so it runs first (atexit is LIFO).
    atexit.register(log_peak_gpu_memory)
