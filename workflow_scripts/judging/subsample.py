"""Which answers a secondary judge scores: all of them, or a stratified subsample.

Strata: every condition (model, persona, dataset, seed) split by the primary judge's
alignment score into *low* (below `low_score_below`) and *rest* (scored at or above it,
or not scored). Each stratum gives ceil(share x its size) answers, the low stratum
`low_score_weight` times as many (capped at its size), and every condition at least one
answer, so the subsample covers every condition and holds the low scores on which the
misaligned class depends. Which answers: the first by a hash of (seed, answer), so the
choice is deterministic, and an answer chosen at one share stays chosen at a larger one.

Pure functions; the `judge_secondary` rule applies them to a primary judged table.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import polars as pl

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import InputError

_DEFAULTS = schema_defaults("judges.subsample")  # config/schema.yaml: the only defaults
CONDITION = ["model", "persona", "dataset", "seed"]
ANSWER = [*CONDITION, "question_id", "sample_idx"]
LOW, REST = "low", "rest"


@dataclass(frozen=True)
class Subsample:
    share: float = _DEFAULTS["share"]  # 1.0: every answer
    low_score_below: float = _DEFAULTS["low_score_below"]
    low_score_weight: float = _DEFAULTS["low_score_weight"]
    seed: int = _DEFAULTS["seed"]

    @classmethod
    def from_config(cls, entry: Mapping[str, Any] | None, where: str) -> Subsample:
        entry = dict(entry or {})
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(entry) - known)
        if unknown:
            raise InputError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
        spec = cls(**entry)
        if not 0 < spec.share <= 1:
            raise InputError(f"{where}.share: expected a share in (0, 1], found {spec.share}")
        if spec.low_score_weight < 1:
            raise InputError(f"{where}.low_score_weight: expected at least 1, found {spec.low_score_weight}")
        return spec

    @property
    def everything(self) -> bool:
        return self.share >= 1


def strata(judged: pl.DataFrame, low_score_below: float) -> pl.Expr:
    """The stratum of each answer of a primary judged table."""
    return pl.when(pl.col("aligned") < low_score_below).then(pl.lit(LOW)).otherwise(pl.lit(REST)).alias("stratum")


def take_count(size: int, share: float, weight: float) -> int:
    return min(size, math.ceil(share * weight * size))


def choose(judged: pl.DataFrame, spec: Subsample) -> pl.DataFrame:
    """The answers of a primary judged table that the secondary judge scores, in the
    table's order, with their stratum (column `stratum`)."""
    missing = [c for c in (*ANSWER, "aligned") if c not in judged.columns]
    if missing:
        raise InputError(f"primary judged table: missing columns {', '.join(missing)}")
    table = judged.with_row_index("_row").with_columns(strata(judged, spec.low_score_below))
    if spec.everything:
        return table.drop("_row")
    order = pl.concat_str([pl.lit(str(spec.seed)), *(pl.col(c).cast(pl.String) for c in ANSWER)], separator="\x1f")
    table = table.with_columns(order.hash(seed=0).alias("_order"))
    ranked = table.sort("_order").with_columns(pl.int_range(pl.len()).over([*CONDITION, "stratum"]).alias("_rank"))
    sizes = ranked.group_by([*CONDITION, "stratum"]).agg(pl.len().alias("_size"))
    weight = pl.when(pl.col("stratum") == LOW).then(pl.lit(float(spec.low_score_weight))).otherwise(pl.lit(1.0))
    quota = pl.min_horizontal(pl.col("_size"), (pl.lit(spec.share) * weight * pl.col("_size")).ceil().cast(pl.Int64))
    chosen = ranked.join(sizes, on=[*CONDITION, "stratum"]).filter(pl.col("_rank") < quota)
    # every condition at least one answer (its first by the hash), whatever the share
    firsts = ranked.filter(pl.int_range(pl.len()).over(CONDITION) == 0)
    rows = pl.concat([chosen.select("_row"), firsts.select("_row")]).unique()
    return table.join(rows, on="_row", how="semi").sort("_row").drop("_row", "_order")


def stratum_counts(judged: pl.DataFrame, chosen: pl.DataFrame, low_score_below: float) -> list[dict]:
    """Per condition and stratum: answers there and answers chosen (for the summary)."""
    keys = [*CONDITION, "stratum"]
    sizes = judged.with_columns(strata(judged, low_score_below)).group_by(keys, maintain_order=True).agg(
        pl.len().alias("answers")
    )
    taken = chosen.group_by(keys).agg(pl.len().alias("chosen"))
    table = sizes.join(taken, on=keys, how="left").with_columns(pl.col("chosen").fill_null(0))
    return table.sort(keys).to_dicts()
