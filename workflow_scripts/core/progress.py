"""Progress lines of a long job, in its log at a steady cadence:

    sampled 1,200/4,800 (25%)  12.5/s  eta 4m48s
    step 120/375 (32%)  loss 1.92  4.4k tok/s  eta 6m

`Progress` logs a line when its count moves and `every_s` seconds have passed since the
last line, and, used as a context manager, from a heartbeat thread when nothing moved for
`every_s` seconds (one engine batch can take minutes): a job's log never goes quiet for
longer. The last line is logged on exit.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable

EVERY_S = 30.0  # at most this long between two lines of a running job


def duration(seconds: float) -> str:
    """4s, 6m05s, 2h03m."""
    seconds = max(0, round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def rate(value: float) -> str:
    """12.5, 950, 4.4k, 1.2M."""
    if value >= 1e6:
        return f"{value / 1e6:.1f}M"
    if value >= 1e4:
        return f"{value / 1e3:.0f}k"
    if value >= 1e3:
        return f"{value / 1e3:.1f}k"
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


class Progress:
    """done/total, rate and ETA of one job's work, logged to `logger`.

    `start` counts work done before this run (a resumed job): it is shown, but the rate
    and the ETA come from this run's work only. `update(n, tokens=..., **fields)` adds n
    items (and tokens, shown as tok/s); `fields` (e.g. loss=1.92) are shown as they are.
    """

    def __init__(
        self,
        what: str,
        total: int,
        logger: logging.Logger,
        start: int = 0,
        every_s: float = EVERY_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.what, self.total, self.logger = what, int(total), logger
        self.done = self.start = int(start)
        self.tokens = 0
        self.fields: dict[str, object] = {}
        self.every_s, self.clock = every_s, clock
        self.began = self.last_line = clock()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._finished = False  # the line at completion is logged once

    def line(self) -> str:
        elapsed = max(self.clock() - self.began, 1e-9)
        new = self.done - self.start
        parts = [f"{self.what} {self.done:,}/{self.total:,}"]
        if self.total:
            parts[0] += f" ({100 * self.done / self.total:.0f}%)"
        parts += [f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in self.fields.items()]
        if new > 0:
            parts.append(f"{rate(new / elapsed)}/s")
        if self.tokens:
            parts.append(f"{rate(self.tokens / elapsed)} tok/s")
        if new > 0 and self.total > self.done:
            parts.append(f"eta {duration((self.total - self.done) * elapsed / new)}")
        elif self.total and self.done >= self.total:
            parts.append(f"done in {duration(elapsed)}")
        else:
            parts.append(f"elapsed {duration(elapsed)}")
        return "  ".join(parts)

    def log(self) -> None:
        with self._lock:
            self.last_line = self.clock()
            text = self.line()
        self.logger.info("%s", text)

    def update(self, n: int = 1, tokens: int = 0, **fields) -> None:
        with self._lock:
            self.done += n
            self.tokens += tokens
            self.fields.update(fields)
            finished = bool(self.total) and self.done >= self.total and not self._finished
            self._finished = self._finished or finished
            due = finished or self.clock() - self.last_line >= self.every_s
        if due:
            self.log()

    def set(self, done: int, **fields) -> None:
        """The count as a total (a trainer's global step) rather than an increment."""
        self.update(done - self.done, **fields)

    def _beat(self) -> None:
        while not self._stop.wait(self.every_s / 2):
            if self.clock() - self.last_line >= self.every_s:
                self.log()

    def __enter__(self) -> Progress:
        self.log()
        self._thread = threading.Thread(target=self._beat, name=f"progress: {self.what}", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        self.log()
