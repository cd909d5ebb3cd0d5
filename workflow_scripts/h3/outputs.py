"""Names of the H3 tables (results/final/tables/) and figures (results/final/), and
how an answer records its checkpoint step (light: the analysis and report read it)."""

import json

TABLES = ("h3_curves", "h3_mechanistic", "h3_transitions", "h3_tests")
FIGURES = ("h3_curves", "h3_transitions")
WHOLE_ADAPTER = "all"  # the module name of the whole-adapter rows of the mechanistic curves


def h3_step(sampling_json: str) -> int | None:
    """The checkpoint step recorded in an answer's `sampling` column (None: not H3)."""
    return (json.loads(sampling_json).get("h3") or {}).get("step")
