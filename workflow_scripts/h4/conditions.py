"""How an H4 answer records its condition (steering scale, ablated direction, layer):
read by the analysis without the steering code's libraries."""

from __future__ import annotations

import json

NO_ABLATION = "none"


def resolve_layer(layer: int | None, layers: int) -> int:
    """The steering layer: config `h4.layer`, or the middle layer when null."""
    chosen = layers // 2 if layer is None else int(layer)
    if not 0 <= chosen < layers:
        raise ValueError(f"h4.layer: {layer}; the model has layers 0..{layers - 1}")
    return chosen


def h4_condition(sampling_json: str) -> dict:
    """The H4 condition recorded in an answer's `sampling` JSON."""
    return json.loads(sampling_json).get("engine_options", {}).get("h4", {})
