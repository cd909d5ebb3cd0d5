"""On-disk cache of judgements: append-only JSONL, one file per writer (job), keyed
by content hash (`tasks.task_key`).

Why this shape: several judge jobs run at once (locally and on SLURM) and file
locking on Lustre is unreliable, so no two processes ever write one file. Each job
appends to its own file, one flushed line per judgement, so a kill loses nothing
that was paid for (a torn last line is skipped on reading). On start a job reads
every file of its judge, keeping only the keys it needs: a line starts with its key,
so lines of other keys are skipped without parsing JSON.

Where the same key was written twice (two jobs judged the same answer at once),
the earliest record is the canonical one, so the choice never changes later.
"""

from __future__ import annotations

import json
import logging
import os
import re
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_KEY_PREFIX = '{"key": "'
_KEY_LEN = 64  # sha256 hex
_FSYNC_EVERY_S = 2.0


def slug(text: str) -> str:
    """A file-name-safe form of a judge id or job name (no separators, no leading dots)."""
    return re.sub(r"[^A-Za-z0-9_.@-]+", "_", text).lstrip("._").rstrip("_") or "judge"


class JudgementCache:
    def __init__(self, directory: str | os.PathLike, writer: str):
        self.directory = Path(directory)
        self.path = self.directory / f"{slug(writer)}.jsonl"
        self._fh: Any = None
        self._last_sync = 0.0
        self.written = 0

    def load(self, keys: Iterable[str]) -> dict[str, dict]:
        """Records for `keys` found in any cache file of this directory."""
        wanted = set(keys)
        found: dict[str, dict] = {}
        if not wanted or not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.jsonl")):
            for record in _read_records(path, wanted):
                key = record["key"]
                old = found.get(key)
                if old is None or record.get("time", 0.0) < old.get("time", 0.0):
                    found[key] = record
        return found

    def served_models(self) -> list[str]:
        """The model id the endpoint reported in the first record of each cache file
        (a job's judgements share one, `trust.ModelPin`); files without one are skipped."""
        found = []
        if not self.directory.is_dir():
            return found
        for path in sorted(self.directory.glob("*.jsonl")):
            with path.open("rb") as fh:
                for raw in fh:
                    try:
                        record = json.loads(raw)
                    except (json.JSONDecodeError, UnicodeDecodeError):
                        continue
                    if isinstance(record, dict) and record.get("served_model"):
                        found.append(str(record["served_model"]))
                    break
        return found

    def append(self, record: dict) -> None:
        """Write one record durably against a process kill (flushed at once; fsynced
        every few seconds and on close against a node crash)."""
        if not re.fullmatch(r"[0-9a-f]{64}", str(record.get("key", ""))):
            raise ValueError(f"{self.path}: cache record needs a sha256 'key', found {record.get('key')!r}")
        if self._fh is None:
            self._open()
        line = json.dumps({"key": record["key"], **record}, ensure_ascii=False, allow_nan=False)
        self._fh.write(line + "\n")
        self._fh.flush()
        self.written += 1
        now = time.monotonic()
        if now - self._last_sync > _FSYNC_EVERY_S:
            os.fsync(self._fh.fileno())
            self._last_sync = now

    def _open(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        needs_newline = False
        if self.path.exists() and self.path.stat().st_size > 0:
            with self.path.open("rb") as fh:
                fh.seek(-1, os.SEEK_END)
                needs_newline = fh.read(1) != b"\n"
        self._fh = self.path.open("a", encoding="utf-8")
        if needs_newline:  # a torn line from a kill: end it, so it stays one bad line
            self._fh.write("\n")
        self._last_sync = time.monotonic()

    def close(self) -> None:
        if self._fh is not None:
            self._fh.flush()
            os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def __enter__(self) -> JudgementCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _read_records(path: Path, wanted: set[str]) -> Iterable[dict]:
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError:
                log.warning("%s: line %d: not UTF-8 text; line skipped", path, lineno)
                continue
            if not line.strip():
                continue
            if not line.endswith("\n"):
                log.warning("%s: line %d: torn line (no newline) skipped", path, lineno)
                continue
            if line.startswith(_KEY_PREFIX):
                key = line[len(_KEY_PREFIX) : len(_KEY_PREFIX) + _KEY_LEN]
                if key not in wanted:
                    continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as err:
                log.warning("%s: line %d, column %d: %s (JSONL); line skipped", path, lineno, err.colno, err.msg)
                continue
            if isinstance(record, dict) and record.get("key") in wanted:
                yield record
