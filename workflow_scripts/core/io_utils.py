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


def _line_of(raw: bytes, offset: int) -> int:
    return raw.count(b"\n", 0, offset) + 1


def read_bytes(path: str | os.PathLike) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise InputError(f"{path}: file not found") from None
    except IsADirectoryError:
        raise InputError(f"{path}: expected a file, found a directory") from None
    except OSError as err:
        raise InputError(f"{path}: cannot be read ({err.strerror})") from None


def decode_utf8(path: str | os.PathLike, raw: bytes, first_line: int = 1) -> str:
    """`raw` as UTF-8 text; an undecodable byte names the file and its line."""
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = first_line + _line_of(raw, err.start) - 1
        raise InputError(
            f"{path}: line {line}: byte 0x{raw[err.start]:02x} is not UTF-8 text "
            "(save the file as UTF-8)"
        ) from None


def read_text(path: str | os.PathLike) -> str:
    """A UTF-8 text file; a missing, unreadable or wrongly encoded file is one InputError."""
    return decode_utf8(path, read_bytes(path))


def read_json(path: str | os.PathLike) -> Any:
    path = Path(path)
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise InputError(f"{path}: line {err.lineno}, column {err.colno}: {err.msg} (JSON)") from None


def read_yaml(path: str | os.PathLike) -> Any:
    """A YAML file (anchors resolved); a syntax error names the line and column."""
    import yaml

    path = Path(path)
    text = read_text(path)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise InputError(f"{path}: {where}{getattr(err, 'problem', None) or err} (YAML)") from None


def read_parquet(path: str | os.PathLike, columns: list[str] | None = None) -> Any:
    """A Parquet file as a polars DataFrame; a truncated or foreign file is one InputError."""
    import polars as pl

    path = Path(path)
    if not path.is_file():
        raise InputError(f"{path}: file not found")
    try:
        return pl.read_parquet(path, columns=columns)
    except (pl.exceptions.PolarsError, OSError, ValueError) as err:
        reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise InputError(f"{path}: not a readable Parquet file ({reason})") from None


def check_safetensors(path: str | os.PathLike) -> None:
    """Every `.safetensors` file at `path` (a file or a model/adapter directory) has a
    readable header whose tensors lie inside the file: a truncated or corrupt weights
    file is one InputError naming it, before a library loads it."""
    path = Path(path)
    files = sorted(path.glob("*.safetensors")) if path.is_dir() else [path]
    for file in files:
        size = file.stat().st_size
        with file.open("rb") as fh:
            head = fh.read(8)
            header_len = int.from_bytes(head, "little") if len(head) == 8 else -1
            if header_len < 2 or 8 + header_len > size:
                raise InputError(
                    f"{file}: not a safetensors file or truncated (header of {header_len} "
                    f"bytes, file of {size})"
                )
            raw = fh.read(header_len)
        try:
            header = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise InputError(f"{file}: safetensors header is not valid JSON (corrupt file)") from None
        try:
            end = max(
                (int(e["data_offsets"][1]) for k, e in header.items() if k != "__metadata__"),
                default=0,
            )
        except (AttributeError, KeyError, IndexError, TypeError, ValueError):
            raise InputError(f"{file}: safetensors header lacks tensor offsets (corrupt file)") from None
        if 8 + header_len + end > size:
            raise InputError(
                f"{file}: truncated: its tensors need {8 + header_len + end} bytes, "
                f"the file has {size}"
            )


def iter_jsonl(path: str | os.PathLike) -> Iterator[tuple[int, dict]]:
    """Yield (line_number, object) for each non-blank line; a bad line names file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with path.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            line = decode_utf8(path, raw, first_line=lineno)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise InputError(f"{path}: line {lineno}, column {err.colno}: {err.msg} (JSONL)") from None
            if not isinstance(obj, dict):
                raise InputError(f"{path}: line {lineno}: expected a JSON object, found {type(obj).__name__}")
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
