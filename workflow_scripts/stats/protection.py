"""Protection: does EM fine-tuning lower alignment less on a persona model than on the
reference model? The verdict estimand of the study.

For one model, persona P, reference R (the base model's `baseline`) and dataset D, four
conditions: P+D, P without EM, R+D, R without EM. Per measure:

    EM effect of P  = P+D - P(no EM)
    protection      = (P+D - P(no EM)) - (R+D - R(no EM))     (a difference in differences)

Measures: the misaligned share among coherent answers, in points of percent
(misaligned = aligned < misaligned_below and coherent > coherent_above, over answers
with coherent > coherent_above), and mean alignment. A protective persona has a
NEGATIVE protection on the misaligned share (EM raises it less) and a POSITIVE one on
mean alignment (EM lowers it less).

Intervals and p come from the shared cluster bootstrap: every replicate draws the
questions once for all four cells (so the cells stay paired by question), and the seeds
of each replicated condition. The p-value is two-sided: t = estimate / se, with se the
bootstrap SD scaled by u / (u - 1) for u resampled units (as the expanded percentile
interval is), on the run-level degrees of freedom (sum of seeds - 1 over the two EM
cells) where seeds are replicated, else Q - 1 (questions).

`protection_tables` is a pure function of a ClusterBootstrap and the settings (plus the
persona check's flags), so any answers table - this grid's, or an import's - analyses
alike.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.bootstrap import ClusterBootstrap, Design, bootstrap_interval
from workflow_scripts.stats.comparisons import with_fdr
from workflow_scripts.stats.settings import StatsSettings

# measure -> (numerator, denominator, scale) of the per-condition ratio
MEASURES: dict[str, tuple[str, str, float]] = {
    "misaligned_share": ("n_misaligned", "n_coherent", 100.0),
    "mean_alignment": ("sum", "n", 1.0),
}


MEASURE_LABELS = {"misaligned_share": "misaligned share among coherent answers", "mean_alignment": "mean alignment"}


MEASURE_UNITS = {"misaligned_share": "points of %", "mean_alignment": "points"}


# persona-check flags that mean the persona is not there (no verdict)
NOT_EXPRESSED = ("NO_KL_FROM_BASE", "NO_TRAIT_INCREASE")


NOT_EXPRESSED_VERDICT = "not assessable: persona not expressed"


ONE_SEED_VERDICT = "not assessable (1 seed)"


def protective_sign(measure: str) -> int:
    """Sign of the protection estimate of a persona that EM harms less."""
    return -1 if measure == "misaligned_share" else 1


def condition_measures(boot: ClusterBootstrap) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Per measure: point (C,) and replicates (B, C) of every condition."""
    design = boot.design
    out = {}
    for measure, (numerator, denominator, scale) in MEASURES.items():
        i, j = design.column(numerator), design.column(denominator)
        with np.errstate(divide="ignore", invalid="ignore"):
            point = scale * boot.point[:, i] / boot.point[:, j]
            reps = scale * boot.totals[:, :, i].T / boot.totals[:, :, j].T
        point[boot.point[:, j] == 0] = np.nan
        out[measure] = (point, reps)
    return out


def _units_and_df(design: Design, em_rows: Sequence[int], rows: Sequence[int]) -> tuple[int, float]:
    """(resampled units for the interval, degrees of freedom for the p-value)."""
    units = design.units(rows)
    replicated = [int(design.n_seeds[c]) for c in em_rows if design.n_seeds[c] > 1]
    df = float(sum(k - 1 for k in replicated)) if replicated else float(units - 1)
    return units, df


def contrast(
    point: float, reps: np.ndarray, units: int, df: float, settings: StatsSettings
) -> dict[str, float]:
    """Estimate, interval, bootstrap SE and two-sided p of one contrast."""
    nan = float("nan")
    finite = reps[np.isfinite(reps)]
    if not np.isfinite(point) or finite.size < 2 or units < 2:
        return {"estimate": float(point), "low": nan, "high": nan, "se": nan, "df": df, "p": nan}
    low, high = bootstrap_interval(reps, units, settings.alpha, settings.bootstrap_interval)
    se = float(np.std(finite, ddof=1)) * np.sqrt(units / (units - 1))
    p = float(2 * stats.t.sf(abs(point) / se, df)) if se > 0 else float(point == 0)
    return {"estimate": float(point), "low": float(low[0]), "high": float(high[0]), "se": se, "df": df, "p": p}


def presence_flags(persona_check: pl.DataFrame | None) -> dict[tuple[str, str], str]:
    """(model, persona) -> the persona check's flag ('ok' or ';'-joined flags)."""
    if persona_check is None or persona_check.height == 0:
        return {}
    return {(m, p): str(f) for m, p, f in persona_check.select(["model", "persona", "flag"]).iter_rows()}


def is_expressed(flag: str | None) -> bool:
    return flag is None or not any(f in NOT_EXPRESSED for f in flag.split(";"))


def _em_effects(boot: ClusterBootstrap, settings: StatsSettings, flags: dict) -> list[dict]:
    """EM effect of every persona (reference included) on every dataset with a control."""
    design = boot.design
    measures = condition_measures(boot)
    rows = []
    for c, model, persona, dataset in design.conditions.select(["c", "model", "persona", "dataset"]).iter_rows():
        if dataset == NO_EM:
            continue
        control = design.index_of(model, persona, NO_EM)
        if control is None:
            continue
        units, df = _units_and_df(design, [c], [c, control])
        for measure, (point, reps) in measures.items():
            effect = contrast(point[c] - point[control], reps[:, c] - reps[:, control], units, df, settings)
            rows.append({
                "model": model, "persona": persona, "dataset": dataset, "role": settings.role_of(dataset),
                "measure": measure, "n_seeds": int(design.n_seeds[c]),
                "em": float(point[c]), "control": float(point[control]),
                "em_effect": effect["estimate"], "em_effect_low": effect["low"],
                "em_effect_high": effect["high"], "em_effect_p": effect["p"],
                "persona_check": flags.get((model, persona)),
                "_c": c, "_control": control,
            })
    return rows


def protection_tables(
    boot: ClusterBootstrap, settings: StatsSettings, persona_check: pl.DataFrame | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(protection, em_effects): the difference in differences of every persona x
    dataset against the reference (both measures, BH per model and measure over the
    family), and the EM effect of every persona x dataset (BH per model, measure and
    dataset role)."""
    design = boot.design
    flags = presence_flags(persona_check)
    effects = _em_effects(boot, settings, flags)
    measures = condition_measures(boot)
    by_key = {(r["model"], r["persona"], r["dataset"], r["measure"]): r for r in effects}
    ref = settings.reference_persona
    out = []
    for effect in effects:
        model, persona, dataset, measure = (effect[k] for k in ("model", "persona", "dataset", "measure"))
        reference = by_key.get((model, ref, dataset, measure))
        if persona == ref or reference is None:
            continue
        point, reps = measures[measure]
        cells = [effect["_c"], effect["_control"], reference["_c"], reference["_control"]]
        pe, p0, re, r0 = cells
        units, df = _units_and_df(design, [pe, re], cells)
        result = contrast(
            (point[pe] - point[p0]) - (point[re] - point[r0]),
            (reps[:, pe] - reps[:, p0]) - (reps[:, re] - reps[:, r0]), units, df, settings,
        )
        in_family = (
            effect["role"] == "em"
            and (settings.fdr_personas is None or persona in settings.fdr_personas)
            and (settings.fdr_datasets is None or dataset in settings.fdr_datasets)
            and is_expressed(effect["persona_check"])
        )
        out.append({
            "model": model, "persona": persona, "dataset": dataset, "role": effect["role"],
            "measure": measure, "n_seeds": min(int(design.n_seeds[pe]), int(design.n_seeds[re])),
            "n_questions": int(min(design.conditions["n_questions"][c] for c in cells)),
            "persona_em": effect["em"], "persona_control": effect["control"],
            "reference_em": reference["em"], "reference_control": reference["control"],
            "em_effect": effect["em_effect"], "em_effect_low": effect["em_effect_low"],
            "em_effect_high": effect["em_effect_high"],
            "reference_effect": reference["em_effect"], "reference_effect_low": reference["em_effect_low"],
            "reference_effect_high": reference["em_effect_high"],
            "protection": result["estimate"], "protection_low": result["low"],
            "protection_high": result["high"], "se": result["se"], "df": result["df"], "p": result["p"],
            "persona_check": effect["persona_check"], "in_family": in_family,
        })
    table = pl.DataFrame(out, schema_overrides={"persona_check": pl.String}) if out else _empty_protection()
    protection = with_fdr(table, ["model", "measure"], settings.alpha, member="in_family")
    em_table = (
        pl.DataFrame([{k: v for k, v in r.items() if not k.startswith("_")} for r in effects],
                     schema_overrides={"persona_check": pl.String})
        if effects else _empty_effects()
    )
    em_table = with_fdr(em_table, ["model", "measure", "role"], settings.alpha, p="em_effect_p")
    return protection, em_table


def _empty_protection() -> pl.DataFrame:
    text = ("model", "persona", "dataset", "role", "measure", "persona_check")
    ints = ("n_seeds", "n_questions")
    floats = ("persona_em", "persona_control", "reference_em", "reference_control", "em_effect",
              "em_effect_low", "em_effect_high", "reference_effect", "reference_effect_low",
              "reference_effect_high", "protection", "protection_low", "protection_high", "se", "df", "p")
    schema = {**dict.fromkeys(text, pl.String), **dict.fromkeys(ints, pl.Int64),
              **dict.fromkeys(floats, pl.Float64), "in_family": pl.Boolean}
    order = ["model", "persona", "dataset", "role", "measure", *ints, *floats[:-1], "p", "persona_check", "in_family"]
    return pl.DataFrame(schema={k: schema[k] for k in order})


def _empty_effects() -> pl.DataFrame:
    return pl.DataFrame(schema={
        "model": pl.String, "persona": pl.String, "dataset": pl.String, "role": pl.String,
        "measure": pl.String, "n_seeds": pl.Int64, "em": pl.Float64, "control": pl.Float64,
        "em_effect": pl.Float64, "em_effect_low": pl.Float64, "em_effect_high": pl.Float64,
        "em_effect_p": pl.Float64, "persona_check": pl.String,
    })


def verdict(row: dict, direction: str, settings: StatsSettings) -> str:
    """The verdict of one hypothesis row on the primary protection estimand."""
    if not is_expressed(row["persona_check"]):
        return NOT_EXPRESSED_VERDICT
    if row["n_seeds"] < 2 and not settings.single_seed_verdicts:
        return ONE_SEED_VERDICT
    if not row["in_family"] or row["p_adj"] is None:
        return "not in FDR family"
    if row["p_adj"] >= settings.alpha:
        return "not supported"
    expected = protective_sign(row["measure"]) * (1 if direction == "higher" else -1)
    return "supported" if np.sign(row["protection"]) == expected else "contrary"


LEVEL_COLUMNS = {"mean_persona": "level_persona", "mean_reference": "level_reference", "diff": "level_diff",
                 "diff_low": "level_low", "diff_high": "level_high", "p_adj": "level_p_adj"}


def hypothesis_table(protection: pl.DataFrame, levels: pl.DataFrame, settings: StatsSettings) -> pl.DataFrame:
    """Each hypothesis's personas on the datasets of role em: the primary protection
    estimate (difference in differences against the reference) with its verdict, and the
    level comparison (persona+EM vs reference+EM, mean alignment) as context.

    Verdict, from the Benjamini-Hochberg adjusted p of the primary estimand: supported
    (adjusted p < alpha, in the hypothesis's direction), contrary (adjusted p < alpha, the
    other direction), not supported; "not assessable" where the persona check finds the
    persona not expressed, or the EM conditions have one seed (unless
    statistics.single_seed_verdicts); "not in FDR family" where the cell is outside it."""
    primary = protection.filter((pl.col("measure") == settings.primary) & (pl.col("role") == "em"))
    level = levels.select(["model", "persona", "dataset", *LEVEL_COLUMNS]).rename(LEVEL_COLUMNS)
    rows = []
    for hypothesis in settings.hypotheses:
        part = primary.filter(pl.col("persona").is_in(list(hypothesis.personas)))
        for row in part.to_dicts():
            rows.append({"hypothesis": hypothesis.name, "direction": hypothesis.direction, **row,
                         "verdict": verdict(row, hypothesis.direction, settings)})
    if not rows:
        empty = primary.head(0).join(level.head(0), on=["model", "persona", "dataset"], how="left")
        return empty.select(
            pl.lit(None, pl.String).alias("hypothesis"), pl.lit(None, pl.String).alias("direction"), pl.all(),
            pl.lit(None, pl.String).alias("verdict"),
        )
    table = pl.DataFrame(rows, schema_overrides={"persona_check": pl.String})
    return table.join(level, on=["model", "persona", "dataset"], how="left", maintain_order="left")


def hypothesis_summary(hypotheses: pl.DataFrame) -> pl.DataFrame:
    """Per model, hypothesis and persona: on how many EM datasets each verdict holds."""
    counts = ("n_datasets", "n_supported", "n_contrary", "n_not_supported", "n_not_assessable")
    if hypotheses.height == 0:
        return pl.DataFrame(schema={"hypothesis": pl.String, "direction": pl.String, "model": pl.String,
                                    "persona": pl.String, **dict.fromkeys(counts, pl.Int64), "n_seeds": pl.Int64,
                                    "supported_on": pl.String, "contrary_on": pl.String,
                                    "persona_check": pl.String})
    return (
        hypotheses.group_by(["hypothesis", "direction", "model", "persona"], maintain_order=True)
        .agg(
            pl.len().alias("n_datasets"),
            (pl.col("verdict") == "supported").sum().alias("n_supported"),
            (pl.col("verdict") == "contrary").sum().alias("n_contrary"),
            (pl.col("verdict") == "not supported").sum().alias("n_not_supported"),
            pl.col("verdict").str.starts_with("not assessable").sum().alias("n_not_assessable"),
            pl.col("n_seeds").min().alias("n_seeds"),
            pl.col("dataset").filter(pl.col("verdict") == "supported").str.join(",").alias("supported_on"),
            pl.col("dataset").filter(pl.col("verdict") == "contrary").str.join(",").alias("contrary_on"),
            pl.col("persona_check").first().alias("persona_check"),
        )
        .with_columns(pl.col(c).cast(pl.Int64) for c in (*counts, "n_seeds"))
    )
