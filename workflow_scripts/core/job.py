"""Logging of a rule's script into the rule's log file."""

from __future__ import annotations

import logging
import sys
from pathlib import Path


def log_to(path: str | Path | None) -> None:
    """Send INFO and above to `path` (the rule's `log:`), warnings also to stderr."""
    handlers: list[logging.Handler] = []
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        handlers.append(logging.FileHandler(path, mode="a", encoding="utf-8"))
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setLevel(logging.WARNING if path else logging.INFO)
    handlers.append(stderr)
    logging.basicConfig(
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        handlers=handlers,
        force=True,
    )


def use_threads(threads: int | None) -> None:
    """Give torch exactly the job's cores. More threads than cores (torch's default on
    a shared node) makes OpenMP spin-wait: 10x slower on a busy 2-core machine."""
    if not threads:
        return
    import torch

    torch.set_num_threads(max(1, int(threads)))


def start_job(smk) -> None:
    """Common start of a persona rule's script: log file and thread count."""
    log_to(smk.log[0] if smk.log else None)
    use_threads(smk.threads)
