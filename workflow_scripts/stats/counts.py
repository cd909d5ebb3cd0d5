"""Counts over table columns that may hold NaN.

In polars a NaN compares greater than every number (`NaN > 0` is true), so a count of
positive differences would count a row whose difference is undefined (the reference
persona against itself, a condition without answers). These helpers turn NaN into
null first: an undefined value is never counted on either side.
"""

from __future__ import annotations

import polars as pl


def defined(column: str | pl.Expr) -> pl.Expr:
    """The column with NaN as null."""
    expr = pl.col(column) if isinstance(column, str) else column
    return expr.fill_nan(None)


def count_above(values: pl.Series, threshold: float = 0.0) -> int:
    """Values strictly above `threshold`; NaN and null are not counted."""
    return int((values.cast(pl.Float64).fill_nan(None) > threshold).sum())


def count_below(values: pl.Series, threshold: float = 0.0) -> int:
    """Values strictly below `threshold`; NaN and null are not counted."""
    return int((values.cast(pl.Float64).fill_nan(None) < threshold).sum())


def count_defined(values: pl.Series) -> int:
    """Values that are neither NaN nor null."""
    return int(values.cast(pl.Float64).fill_nan(None).is_not_null().sum())
