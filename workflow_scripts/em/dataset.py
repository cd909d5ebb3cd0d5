"""EM training data: chat rows checked row by row, and their conversion to the
prompt/completion rows that trl trains on with loss on the completion only.

A valid row is `{"messages": [...]}`: an optional leading system message, then
user and assistant turns alternating, starting with user and ending with assistant,
every content a non-empty string. Pure functions: no torch, no trl.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from workflow_scripts.core.hashing import sha256_file
from workflow_scripts.core.io_utils import (
    InputError,
    iter_jsonl,
    write_json_atomic,
    write_jsonl_atomic,
)
from workflow_scripts.core.sources import materialise_source

ROLES = ("system", "user", "assistant")


MAX_REPORTED = 20  # bad rows named in one error message


@dataclass(frozen=True)
class RowProblem:
    line: int
    problem: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.problem}"


def row_problem(row: dict) -> str | None:
    """What is wrong with one chat row, or None when it is a valid training row."""
    messages = row.get("messages")
    if not isinstance(messages, list):
        return f"expected a 'messages' list, found {type(messages).__name__ if 'messages' in row else 'no messages key'}"
    if len(messages) < 2:
        return f"expected at least a user and an assistant message, found {len(messages)} message(s)"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"messages[{i}]: expected an object, found {type(message).__name__}"
        role = message.get("role")
        if role not in ROLES:
            return f"messages[{i}].role: expected one of {', '.join(ROLES)}, found {role!r}"
        content = message.get("content")
        if not isinstance(content, str) or not content.strip():
            return f"messages[{i}].content: expected a non-empty string, found {content!r}"
    turns = messages[1:] if messages[0]["role"] == "system" else messages
    for i, message in enumerate(turns):
        expected = "user" if i % 2 == 0 else "assistant"
        if message["role"] != expected:
            index = i + (len(messages) - len(turns))
            return f"messages[{index}].role: expected {expected} (user and assistant alternate, user first), found {message['role']}"
    if not turns or turns[-1]["role"] != "assistant":
        return "the last message must be the assistant's answer"
    return None


def read_chat_rows(path: str | os.PathLike, max_rows: int | None = None) -> list[dict]:
    """Valid `{"messages": [...]}` rows of a JSONL file; every bad row is reported by line.

    Raises InputError naming the file and the first MAX_REPORTED bad lines (and how many
    there are in all) when any row is invalid: a training set is used whole or not at all.
    """
    path = Path(path)
    rows: list[dict] = []
    problems: list[RowProblem] = []
    for line, row in iter_jsonl(path):
        problem = row_problem(row)
        if problem is not None:
            problems.append(RowProblem(line, problem))
            continue
        rows.append({"messages": [{"role": m["role"], "content": m["content"]} for m in row["messages"]]})
    if problems:
        listed = "; ".join(str(p) for p in problems[:MAX_REPORTED])
        more = f" (and {len(problems) - MAX_REPORTED} more)" if len(problems) > MAX_REPORTED else ""
        raise InputError(f"{path}: {len(problems)} invalid chat row(s): {listed}{more}")
    if not rows:
        raise InputError(f"{path}: no rows; expected chat rows {{\"messages\": [...]}}")
    return rows[:max_rows] if max_rows else rows


def to_prompt_completion(row: dict) -> dict:
    """The prompt is every message before the last assistant message; the completion is
    that message. trl then computes the loss on the completion tokens only."""
    messages = row["messages"]
    return {"prompt": messages[:-1], "completion": messages[-1:]}


def prompt_completion_rows(rows: Iterable[dict]) -> list[dict]:
    return [to_prompt_completion(row) for row in rows]


log = logging.getLogger(__name__)


SOURCE_CACHE = Path("results/datasets/.sources")


def public_source(source: dict, archives: dict) -> dict:
    """The source as recorded in metadata (an archive's entry included; no secret is in it)."""
    record = dict(source)
    if source["type"] == "archive":
        entry = archives.get(source["archive"], {})
        record["archive_source"] = entry.get("source")
        record["password_env"] = entry.get("password_env")
    return record


def build_dataset(
    name: str,
    entry: dict,
    archives: dict,
    out_data: Path,
    out_meta: Path,
    cache_dir: Path = SOURCE_CACHE,
) -> dict:
    """Materialise dataset `name` and return its metadata."""
    what = f"datasets.{name}.source"
    path, observed = materialise_source(entry["source"], cache_dir, what, archives)
    max_rows = entry.get("max_rows")
    rows = read_chat_rows(path, max_rows=max_rows)
    write_jsonl_atomic(out_data, rows)
    meta = {
        "dataset": name,
        "source": public_source(entry["source"], archives),
        "source_sha256": observed,
        "pinned": bool(entry["source"].get("sha256")),
        "allow_unpinned": bool(entry["source"].get("allow_unpinned")),
        "max_rows": max_rows,
        "n_rows": len(rows),
        "kind": entry.get("kind", "sft"),
        "kl": entry.get("kl"),
        "sha256": sha256_file(out_data),
    }
    write_json_atomic(out_meta, meta)
    log.info("%s: %d rows from %s (sha256 %s)", name, len(rows), path, observed)
    return meta
