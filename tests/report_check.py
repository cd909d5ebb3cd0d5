"""Check RESULTS.md by content: every number of a finding equals a cell of the table
row its source note names (at the precision printed)."""

from __future__ import annotations

import re

import polars as pl

SOURCE = re.compile(r"<!-- source: (\w+) \| (.*?) -->")
NUMBER = re.compile(r"(<\s*)?[-+]?\d+(?:\.\d+)?")


def findings_lines(text: str) -> list[str]:
    start = text.index("## Findings")
    end = text.index("\n## ", start + 1)
    return [line for line in text[start:end].splitlines() if line.lstrip().startswith("- ")]


def _row(tables: dict[str, pl.DataFrame], table: str, keys: str) -> dict:
    part = tables[table]
    for pair in keys.split("; "):
        column, value = pair.split("=", 1)
        part = part.filter(pl.col(column).cast(pl.String) == value)
    if part.height != 1:
        raise AssertionError(f"source {table} | {keys}: {part.height} rows, expected one")
    return part.row(0, named=True)


def _matches(token: str, cells: list[float]) -> bool:
    """`token` as printed ("+1.2", "-0.4", "3", "< 0.0001") is one of `cells`."""
    if token.startswith("<"):
        bound = float(token.lstrip("< "))
        return any(c < bound for c in cells)
    decimals = len(token.split(".")[1]) if "." in token else 0
    value = token.lstrip("+")
    return any(f"{cell:.{decimals}f}" == value for cell in cells)


def check_findings(text: str, tables: dict[str, pl.DataFrame]) -> list[str]:
    """Problems found (empty: every number of every finding is a cell of its source row)."""
    problems = []
    for line in findings_lines(text):
        match = SOURCE.search(line)
        if not match:
            problems.append(f"no source note: {line}")
            continue
        try:
            row = _row(tables, match.group(1), match.group(2))
        except AssertionError as err:
            problems.append(str(err))
            continue
        visible = line[: match.start()]
        names = sorted((str(v) for v in row.values() if isinstance(v, str) and v), key=len, reverse=True)
        for name in names:  # names (models, datasets, verdicts) may hold digits
            visible = visible.replace(name, " ")
        cells = [float(v) for v in row.values() if isinstance(v, int | float) and not isinstance(v, bool)
                 and v == v]
        for token in (m.group(0) for m in NUMBER.finditer(visible)):
            if not _matches(token, cells):
                problems.append(f"{token!r} is no cell of {match.group(1)} | {match.group(2)}: {line}")
    return problems
