"""Robustness of the verdicts to the judge: the protection verdicts of every hypothesis
recomputed from each secondary judge's scores, on the answers it scored (its
subsample), by the same statistics as the primary verdicts (stats.protection).

For each secondary judge and hypothesis cell: the primary verdict (every answer), the
primary judge's verdict on the judge's subsample (so a change of verdict can be told
from a change of answers), the secondary judge's verdict, and whether it is the
primary's. A verdict *holds* where every secondary judge gives the primary's verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import polars as pl

from workflow_scripts.core.misalignment import coherence_filter, with_misaligned
from workflow_scripts.core.schema import ANALYSIS_SCHEMA, check_columns, prompt_variant
from workflow_scripts.judging.agreement import COLUMNS as AGREEMENT_COLUMNS
from workflow_scripts.stats.answers import ONE_ANSWER, one_judgement_per_answer
from workflow_scripts.stats.bootstrap import ClusterBootstrap, build_design
from workflow_scripts.stats.comparisons import persona_comparisons
from workflow_scripts.stats.protection import hypothesis_table, protection_tables
from workflow_scripts.stats.report import markdown_table, num
from workflow_scripts.stats.settings import StatsSettings
from workflow_scripts.stats.tables import display_order, select_prompt_variant

CELL = ["hypothesis", "direction", "model", "persona", "dataset"]
COLUMNS = {
    "hypothesis": pl.String, "direction": pl.String, "model": pl.String, "persona": pl.String,
    "dataset": pl.String, "judge": pl.String, "n_answers": pl.Int64, "verdict_primary": pl.String,
    "verdict_primary_subsample": pl.String, "verdict_secondary": pl.String, "protection_primary": pl.Float64,
    "protection_secondary": pl.Float64, "agrees": pl.Boolean,
}  # fmt: skip


def hypothesis_verdicts(
    answers: pl.DataFrame, settings: StatsSettings, persona_check: pl.DataFrame | None = None
) -> pl.DataFrame:
    """The hypothesis table (stats.protection.hypothesis_table) of an answers table."""
    if "prompt_variant" not in answers.columns:
        answers = answers.with_columns(prompt_variant())
    answers = one_judgement_per_answer(answers)
    answers = check_columns(select_prompt_variant(answers, settings), ANALYSIS_SCHEMA, "answers")
    flagged = with_misaligned(answers, settings.misaligned_below, settings.coherent_above)
    scored = coherence_filter(answers.filter(pl.col("aligned").is_not_null()), settings.coherence_filter)
    if scored.height == 0:
        raise ValueError("answers: no answer has an alignment score; no verdict to recompute")
    design = build_design(scored, flagged, settings.tail_thresholds, display_order(answers, settings))
    boot = ClusterBootstrap(design, settings.bootstrap_resamples, settings.seed)
    protection, _ = protection_tables(boot, settings, persona_check)
    return hypothesis_table(protection, persona_comparisons(boot, settings), settings)


def on_answers_of(primary: pl.DataFrame, secondary: pl.DataFrame) -> pl.DataFrame:
    """The primary judge's answers that the secondary judge scored."""
    return primary.join(secondary.select(ONE_ANSWER).unique(), on=ONE_ANSWER, how="semi")


def robustness_table(
    primary: pl.DataFrame,
    by_judge: Mapping[str, tuple[pl.DataFrame, pl.DataFrame, int]],
) -> pl.DataFrame:
    """Long table, one row per hypothesis cell and secondary judge. `primary`: the
    primary hypothesis table (every answer); `by_judge`: judge -> (the primary's
    hypothesis table on the judge's subsample, the judge's own, answers it scored)."""
    base = primary.select([*CELL, pl.col("verdict").alias("verdict_primary"),
                           pl.col("protection").alias("protection_primary")])  # fmt: skip
    parts = []
    for judge, (primary_subsample, secondary, n_answers) in by_judge.items():
        sub = primary_subsample.select([*CELL, pl.col("verdict").alias("verdict_primary_subsample")])
        own = secondary.select([*CELL, pl.col("verdict").alias("verdict_secondary"),
                                pl.col("protection").alias("protection_secondary")])  # fmt: skip
        part = (
            base.join(sub, on=CELL, how="left", nulls_equal=True)
            .join(own, on=CELL, how="left", nulls_equal=True)
            .with_columns(pl.lit(judge).alias("judge"), pl.lit(n_answers, pl.Int64).alias("n_answers"))
            .with_columns((pl.col("verdict_secondary") == pl.col("verdict_primary")).fill_null(False).alias("agrees"))
        )
        parts.append(part.select(list(COLUMNS)))
    if not parts:
        return pl.DataFrame(schema=COLUMNS)
    return pl.concat(parts, how="vertical").cast(COLUMNS)


def holds_table(robustness: pl.DataFrame) -> pl.DataFrame:
    """Per hypothesis cell: the primary verdict, each judge's, and whether it holds
    under every judge."""
    if robustness.height == 0:
        return pl.DataFrame(schema={**{c: pl.String for c in CELL}, "verdict_primary": pl.String,
                                    "verdicts": pl.String, "holds": pl.Boolean})  # fmt: skip
    return robustness.group_by([*CELL, "verdict_primary"], maintain_order=True).agg(
        pl.concat_str([pl.col("judge"), pl.lit(": "), pl.col("verdict_secondary").fill_null("no verdict")])
        .str.join("; ")
        .alias("verdicts"),
        pl.col("agrees").all().alias("holds"),
    )


def robustness_section(robustness: pl.DataFrame, agreement: pl.DataFrame | None = None) -> str:
    """The RESULTS.md section: agreement per judge and metric (every answer both scored)
    and which verdicts hold under every judge."""
    lines = ["## Judges", ""]
    judges = sorted(set(robustness["judge"].to_list())) if robustness.height else []
    lines.append(
        "Secondary judges: " + (", ".join(f"`{j}`" for j in judges) or "none") + ". Each scored every answer or a "
        "stratified subsample (every condition, low primary scores oversampled); the verdicts were recomputed "
        "from its scores on the answers it scored (tables judges/robustness.csv and judges/*/agreement.csv)."
    )
    if agreement is not None and agreement.height:
        lines += ["", "### Agreement with the primary judge", ""]
        overall = agreement.filter(pl.col("scope") == "all").to_dicts()
        lines.append(markdown_table(overall, [
            ("judge", _text("judge")), ("metric", _text("metric")), ("n", _text("n")),
            ("Spearman", _num("spearman")), ("Krippendorff alpha (interval)", _num("krippendorff_alpha")),
            ("mean difference", _num("mean_diff", 1)), ("limits of agreement", _loa),
            ("Cohen kappa (misaligned)", _num("kappa")),
        ]))  # fmt: skip
    lines += ["", "### Verdicts under every judge", ""]
    holds = holds_table(robustness).to_dicts()
    if not holds:
        lines.append("No hypothesis cell to compare.")
    else:
        kept = sum(1 for r in holds if r["holds"])
        lines.append(f"{kept} of {len(holds)} verdicts hold under every judge.")
        lines.append("")
        rows = [{**r, "holds": "yes" if r["holds"] else "no"} for r in holds]
        lines.append(markdown_table(rows, [
            ("hypothesis", _text("hypothesis")), ("model", _text("model")), ("persona", _text("persona")),
            ("dataset", _text("dataset")), ("primary verdict", _text("verdict_primary")),
            ("secondary judges", _text("verdicts")), ("holds under every judge", _text("holds")),
        ]))  # fmt: skip
    return "\n".join(lines) + "\n"


def _text(key: str):
    return lambda row: "" if row.get(key) is None else str(row[key])


def _num(key: str, digits: int = 2):
    return lambda row: num(row.get(key), digits)


def _loa(row: dict) -> str:
    if row.get("loa_low") is None:
        return ""
    return f"[{num(row['loa_low'], 1)}, {num(row['loa_high'], 1)}]"


def judges_section(robustness_path: str | Path, agreement_paths: Sequence[str | Path]) -> str:
    """The RESULTS.md section from the robustness table and the agreement tables."""
    robustness = pl.read_csv(robustness_path, schema_overrides=COLUMNS)
    agreements = [pl.read_csv(p, schema_overrides=AGREEMENT_COLUMNS) for p in agreement_paths]
    agreement = pl.concat(agreements, how="vertical_relaxed") if agreements else None
    return robustness_section(robustness, agreement)
