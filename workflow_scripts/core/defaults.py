"""The config's defaults, read from config/schema.yaml: the only place they are written.
Settings objects take their field defaults from here, so code built without a config
(tests, benchmarks, command-line tools) runs with the same values as the workflow."""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import yaml

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "config" / "schema.yaml"


@functools.cache
def _schema() -> dict:
    return yaml.safe_load(SCHEMA_FILE.read_text(encoding="utf-8"))


def schema_node(path: str) -> dict:
    """The schema of a dotted config key (`judge`, `persona_training.dpo`)."""
    node = _schema()
    for part in path.split("."):
        try:
            node = node["properties"][part]
        except KeyError:
            raise KeyError(f"{SCHEMA_FILE.name}: no config key '{path}'") from None
    return node


def schema_defaults(path: str) -> dict[str, Any]:
    """Defaults of the keys of the config object at `path` (copies: safe to mutate)."""
    properties = schema_node(path).get("properties", {})
    return {
        key: copy.deepcopy(entry["default"])
        for key, entry in properties.items()
        if "default" in entry
    }
