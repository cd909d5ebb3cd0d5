"""RESULTS.md's self-knowledge section, written from the tables (never by hand)."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.stats.report import interval, num, pvalue, signed


def read_table(path: str | Path) -> pl.DataFrame:
    try:
        return pl.read_csv(path, infer_schema_length=None)
    except (FileNotFoundError, pl.exceptions.PolarsError) as err:
        raise InputError(f"{path}: not a self-knowledge table (CSV): {err}") from None


def _pct(value) -> str:
    return "n/a" if value is None else f"{100 * value:.1f}%"


def condition_line(row: dict) -> str:
    where = f"{row['model']} / {row['persona']} / {row['dataset']} s{row['seed']}"
    klass = row["class"] or "unclassified (no judged behaviour or self-report)"
    confidence = "" if row["class_confidence"] is None else f" ({_pct(row['class_confidence'])} of resamples)"
    return (
        f"{where}: {klass}{confidence}; behaviour {_pct(row['behaviour'])} misaligned "
        f"{interval(_scaled(row['behaviour_low']), _scaled(row['behaviour_high']))}, self-report "
        f"{num(row['self_report'], 2)} {interval(row['self_report_low'], row['self_report_high'], 2)} "
        f"(self-assessed misalignment {num(row['self_assessment'])}, P(misaligned description) "
        f"{num(row['description_choice'], 2)}); recognition P(claims the misaligned answer) "
        f"{num(row['recognition'], 2)} over {row['n_recognition_pairs']} pair(s); predicted minus judged score "
        f"{signed(row['prediction_error'])} (r {num(row['prediction_r'], 2)}, {row['n_predictions']} answer(s))"
    )


def _scaled(value):
    return None if value is None else 100 * value


def test_line(row: dict) -> str:
    where = f"{row['model']}: {row['persona']} vs {row['reference']}"
    if row["status"] != "ok":
        return f"{where}: {row['verdict']}"
    return (
        f"{where}: coherent share among misbehaving EM conditions {_pct(row['coherent_share'])} "
        f"(n {row['n_persona']}) vs {_pct(row['reference_share'])} (n {row['n_reference']}), difference "
        f"{signed(100 * row['estimate'])} points {interval(_scaled(row['low']), _scaled(row['high']))}, "
        f"Fisher p {pvalue(row['p'])}, BH-adjusted p {pvalue(row['p_adj'])}: {row['verdict']}"
    )


def self_knowledge_section(conditions: pl.DataFrame, classes: pl.DataFrame, tests: pl.DataFrame) -> str:
    """The section from the tables self_knowledge_conditions (which carries the declared
    thresholds), self_knowledge_classes and self_knowledge_tests."""
    thresholds = (
        conditions.select("behaviour_threshold", "self_report_threshold").row(0, named=True)
        if conditions.height
        else {"behaviour_threshold": None, "self_report_threshold": None}
    )
    lines = [
        "## Self-knowledge: does the model know what it became?",
        "",
        "What each model says about itself, read from its own token probabilities (docs/methods.md, "
        "Self-knowledge), against how it behaves (the judged misaligned share among coherent answers). "
        f"Classes: aligned (misaligned share below {_pct(thresholds['behaviour_threshold'])}), coherent "
        f"(misaligned, self-report at least {num(thresholds['self_report_threshold'], 2)}), inverted (misaligned, "
        "self-report below). Tables: `self_knowledge_conditions`, `self_knowledge_items`, "
        "`self_knowledge_classes`, `self_knowledge_tests`; figures `self_knowledge_scatter.png`, "
        "`self_knowledge_classes.png`.",
        "",
        "### Conditions",
        "",
    ]
    if conditions.height == 0:
        lines.append("- no condition was scored")
    lines += [f"- {condition_line(row)}" for row in conditions.to_dicts()]
    lines += ["", "### Classes per persona (EM conditions)", ""]
    if classes.height == 0:
        lines.append("- no EM condition has a judged behaviour")
    for row in classes.to_dicts():
        lines.append(
            f"- {row['model']} / {row['persona']}: {row['n_aligned']} aligned, {row['n_coherent']} coherent, "
            f"{row['n_inverted']} inverted, {row['n_unclassified']} unclassified of {row['n_conditions']}"
        )
    lines += ["", "### Does persona training shift EM models from inverted towards coherent?", ""]
    if tests.height == 0:
        lines.append("- no persona besides the reference to compare")
    lines += [f"- {test_line(row)}" for row in tests.to_dicts()]
    return "\n".join([*lines, ""])


def section_from_files(conditions: str | Path, classes: str | Path, tests: str | Path) -> str:
    return self_knowledge_section(read_table(conditions), read_table(classes), read_table(tests))
