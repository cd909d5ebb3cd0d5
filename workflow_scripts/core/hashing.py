"""Content hashes: files, directory trees and JSON-able settings."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

_CHUNK = 1 << 20


def sha256_file(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def tree_hash(root: str | os.PathLike, suffixes: tuple[str, ...] | None = None) -> str:
    """Hash of every file under `root` (relative names and contents), order-independent.

    `suffixes` limits it to some files (e.g. weights and adapter configs), so logs or
    metadata written beside the weights do not change the identity of a model.
    """
    root = Path(root)
    digest = hashlib.sha256()
    files = sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith("."))
    if suffixes is not None:
        files = [p for p in files if p.name.endswith(suffixes)]
    for path in files:
        digest.update(str(path.relative_to(root)).encode())
        digest.update(b"\0")
        digest.update(sha256_file(path).encode())
        digest.update(b"\n")
    return digest.hexdigest()


WEIGHT_SUFFIXES = (".safetensors", ".bin", "config.json")


def weights_hash(model_or_adapter_dir: str | os.PathLike) -> str:
    """Identity of a model or adapter: its weight files and configs only."""
    return tree_hash(model_or_adapter_dir, WEIGHT_SUFFIXES)


def settings_hash(settings: Any) -> str:
    """Stable short hash of JSON-able settings (dict key order does not matter)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_hash(*parts: str) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()
