"""File I/O shared by every stage: atomic writes, JSONL with line-numbered errors,
and resumable chunked JSONL output.

Every finished output is written to a temporary name in the same directory and
renamed into place, so a killed job never leaves a file that looks complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from workflow_scripts.core.hashing import settings_hash

log = logging.getLogger(__name__)


class InputError(ValueError):
    """Bad input: the message names the file and the place (line, field)."""


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _usual_mode(path: Path, directory: bool) -> None:
    """mkstemp/mkdtemp create private files; give outputs the usual permissions,
    so that group members on a cluster can read results."""
    os.chmod(path, (0o777 if directory else 0o666) & ~_umask())


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary path beside `final`; rename it to `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(
        prefix=f".{final.name}.", suffix=suffix + ".tmp", dir=final.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    _usual_mode(tmp, directory=False)
    try:
        yield tmp
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_dir(final: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary directory beside `final`; move it to `final` only on success."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent))
    _usual_mode(tmp, directory=True)
    try:
        yield tmp
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)


def write_text_atomic(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def write_json_atomic(path: str | os.PathLike, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True, default=str) + "\n")


def write_jsonl_atomic(path: str | os.PathLike, rows: Iterable[dict]) -> None:
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")


def write_parquet_atomic(df: Any, path: str | os.PathLike) -> None:
    """Write a polars DataFrame to Parquet atomically."""
    with atomic_path(path, suffix=".parquet") as tmp:
        df.write_parquet(tmp)


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except json.JSONDecodeError as err:
        raise InputError(
            f"{path}: line {err.lineno}, column {err.colno}: {err.msg} (JSON)"
        ) from None


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line names file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(
                    f"{path}: line {lineno}, column {err.colno}: {err.msg} (JSONL)"
                ) from None
            if not isinstance(obj, dict):
                raise InputError(
                    f"{path}: line {lineno}: expected a JSON object, found {type(obj).__name__}"
                )
            yield lineno, obj


def read_jsonl(path: str | os.PathLike) -> list[dict]:
    return [obj for _, obj in iter_jsonl(path)]


class ResumableJsonl:
    """Append-only JSONL output that survives kills and resumes without duplicates.

    Rows go to `<final>.partial` in chunks, each flushed and fsynced; a torn last
    line (killed mid-write) is dropped on reopen. `key(row)` identifies a row, so a
    resumed run asks `done_keys` what to skip. `finish()` renames the partial file
    to the final output, so the final name exists only once everything is written.

    `fingerprint` is everything the rows depend on (settings, and the content hashes
    of the inputs). Its hash is kept beside the partial file
    (`<final>.partial.settings.json`); a partial file made with another fingerprint,
    or with none recorded, is discarded (logged) and the output starts over, so a
    job rerun after an edit never mixes old-settings rows with new ones.
    """

    def __init__(self, final: str | os.PathLike, key: Callable[[dict], Any], fingerprint: Any):
        self.final = Path(final)
        self.partial = self.final.with_name(self.final.name + ".partial")
        self.settings_file = self.final.with_name(self.final.name + ".partial.settings.json")
        self.key = key
        self.rows: list[dict] = []
        self.fingerprint_hash = settings_hash(fingerprint)
        self.final.parent.mkdir(parents=True, exist_ok=True)
        if self.partial.exists():
            recorded = self._recorded_hash()
            if recorded == self.fingerprint_hash:
                self._recover()
                return
            log.warning(
                "%s: made with other settings or inputs (hash %s, now %s); discarded, "
                "starting over",
                self.partial,
                recorded or "not recorded",
                self.fingerprint_hash,
            )
            self.partial.unlink()
        write_json_atomic(
            self.settings_file,
            {"settings_hash": self.fingerprint_hash, "fingerprint": fingerprint},
        )

    def _recorded_hash(self) -> str | None:
        try:
            return json.loads(self.settings_file.read_text(encoding="utf-8"))["settings_hash"]
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def _recover(self) -> None:
        good: list[str] = []
        with self.partial.open(encoding="utf-8") as fh:
            for line in fh:
                if not line.endswith("\n"):
                    break  # torn write from a kill
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:
                    break
                good.append(line)
                self.rows.append(row)
        # Rewrite without the torn tail so later appends start on a clean line.
        with atomic_path(self.partial) as tmp:
            tmp.write_text("".join(good), encoding="utf-8")
        seen: set = set()
        deduped = []
        for row in self.rows:
            k = self.key(row)
            if k not in seen:
                seen.add(k)
                deduped.append(row)
        self.rows = deduped

    @property
    def done_keys(self) -> set:
        return {self.key(row) for row in self.rows}

    def append(self, rows: Iterable[dict]) -> None:
        """Write one chunk durably."""
        rows = list(rows)
        if not rows:
            return
        done = self.done_keys
        fresh = [r for r in rows if self.key(r) not in done]
        with self.partial.open("a", encoding="utf-8") as fh:
            for row in fresh:
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self.rows.extend(fresh)

    def finish(self, sort_key: Callable[[dict], Any] | None = None) -> list[dict]:
        """Move the complete output into place (sorted, for run-to-run equality)."""
        rows = sorted(self.rows, key=sort_key) if sort_key else self.rows
        write_jsonl_atomic(self.final, rows)
        self.discard_partial()
        return rows

    def discard_partial(self) -> None:
        """Drop the partial file once the final output (of any format) is in place."""
        for path in (self.partial, self.settings_file):
            if path.exists():
                path.unlink()
