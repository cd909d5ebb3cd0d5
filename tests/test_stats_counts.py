"""Counts over columns with NaN: an undefined difference is never counted."""

import polars as pl

from workflow_scripts.stats.counts import count_above, count_below, count_defined


def test_nan_row_of_the_reference_is_not_counted_as_positive():
    # the reference persona's own difference is NaN; polars orders NaN above every number
    diff = pl.Series("diff", [float("nan"), 1.5, -0.5, 2.0, None])
    assert int((diff > 0).sum()) == 3  # the naive count: off by one
    assert count_above(diff) == 2
    assert count_below(diff) == 1
    assert count_defined(diff) == 3


def test_counts_of_integer_and_empty_columns():
    assert count_above(pl.Series([0, 1, 2])) == 2
    assert count_below(pl.Series([], dtype=pl.Float64)) == 0
