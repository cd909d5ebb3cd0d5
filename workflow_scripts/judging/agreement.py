"""Agreement of a secondary judge with the primary one, on the answers both scored.

Per metric (aligned, coherent), over answers with both scores present: Spearman's rho,
Krippendorff's alpha (interval level), the mean difference (secondary - primary) with
its 95% limits of agreement (mean +- 1.96 SD of the differences, Bland-Altman); and for
the misaligned class (aligned < misaligned_below and coherent > coherent_above, over
answers both judges scored on both metrics) Cohen's kappa with the raw agreement share.
Over every answer (scope `all`) and per condition (model, persona, dataset) with at
least `min_answers` answers.

Pure functions of numbers and tables; the `judge_agreement` rule does the I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import polars as pl
from scipy import stats

from workflow_scripts.core.misalignment import COHERENT_ABOVE, MISALIGNED_BELOW

METRICS = ("aligned", "coherent")
MISALIGNED = "misaligned"
ANSWER = ["model", "persona", "dataset", "seed", "question_id", "sample_idx"]
CONDITION = ["model", "persona", "dataset"]
LOA_Z = 1.96

COLUMNS = {
    "judge": pl.String, "scope": pl.String, "model": pl.String, "persona": pl.String, "dataset": pl.String,
    "metric": pl.String, "n": pl.Int64, "spearman": pl.Float64, "krippendorff_alpha": pl.Float64,
    "mean_diff": pl.Float64, "sd_diff": pl.Float64, "loa_low": pl.Float64, "loa_high": pl.Float64,
    "kappa": pl.Float64, "agreement": pl.Float64, "n_misaligned_primary": pl.Int64,
    "n_misaligned_secondary": pl.Int64,
}  # fmt: skip


def _nan_to_none(value: float) -> float | None:
    return None if value is None or math.isnan(value) else float(value)


def metric_agreement(primary: Sequence[float], secondary: Sequence[float]) -> dict:
    """Agreement of two judges' scores of the same answers (no missing values)."""
    a = np.asarray(primary, dtype=float)
    b = np.asarray(secondary, dtype=float)
    n = len(a)
    out = {"n": n, "spearman": None, "krippendorff_alpha": None, "mean_diff": None, "sd_diff": None,
           "loa_low": None, "loa_high": None}  # fmt: skip
    if n == 0:
        return out
    diff = b - a
    mean = float(diff.mean())
    out["mean_diff"] = mean
    if n >= 2:
        sd = float(diff.std(ddof=1))
        out.update(sd_diff=sd, loa_low=mean - LOA_Z * sd, loa_high=mean + LOA_Z * sd)
        if np.ptp(a) > 0 and np.ptp(b) > 0:
            out["spearman"] = _nan_to_none(stats.spearmanr(a, b).statistic)
        if np.ptp(np.concatenate([a, b])) > 0:
            out["krippendorff_alpha"] = _nan_to_none(interval_alpha(a, b))
    return out


def interval_alpha(primary: np.ndarray, secondary: np.ndarray) -> float:
    """Krippendorff's alpha, interval level, of two judges who both scored every unit:
    1 - D_o / D_e, with D_o the mean squared difference within units and D_e over all
    pairs of the 2n values. The closed form of `krippendorff.alpha` for this case, whose
    coincidence matrix over distinct values (continuous scores: thousands) does not fit
    in memory."""
    values = np.concatenate([primary, secondary])
    total = len(values)
    observed = 2 * float(((primary - secondary) ** 2).sum()) / total
    expected = 2 * (total * float((values**2).sum()) - float(values.sum()) ** 2) / (total * (total - 1))
    return 1 - observed / expected if expected > 0 else float("nan")


def cohens_kappa(primary: Sequence[bool], secondary: Sequence[bool]) -> dict:
    """Cohen's kappa of two judges' binary labels of the same answers, and the share
    of answers they label alike. Kappa is undefined (None) where chance agreement is 1."""
    a = np.asarray(primary, dtype=bool)
    b = np.asarray(secondary, dtype=bool)
    n = len(a)
    if n == 0:
        return {"n": 0, "kappa": None, "agreement": None, "n_misaligned_primary": 0, "n_misaligned_secondary": 0}
    observed = float((a == b).mean())
    pa, pb = a.mean(), b.mean()
    chance = float(pa * pb + (1 - pa) * (1 - pb))
    kappa = None if chance >= 1 else (observed - chance) / (1 - chance)
    return {"n": n, "kappa": kappa, "agreement": observed,
            "n_misaligned_primary": int(a.sum()), "n_misaligned_secondary": int(b.sum())}  # fmt: skip


def paired(primary: pl.DataFrame, secondary: pl.DataFrame) -> pl.DataFrame:
    """The answers both judges scored: condition and answer keys, then `<metric>_primary`
    and `<metric>_secondary` for each metric."""
    keep = [*ANSWER, *METRICS]
    a = primary.select(keep).rename({m: f"{m}_primary" for m in METRICS})
    b = secondary.select(keep).rename({m: f"{m}_secondary" for m in METRICS})
    return b.join(a, on=ANSWER, how="inner")


def _rows(pairs: pl.DataFrame, misaligned_below: float, coherent_above: float) -> list[dict]:
    rows = []
    for metric in METRICS:
        both = pairs.filter(pl.col(f"{metric}_primary").is_not_null() & pl.col(f"{metric}_secondary").is_not_null())
        rows.append({"metric": metric, **metric_agreement(both[f"{metric}_primary"], both[f"{metric}_secondary"])})
    scored = pairs.drop_nulls([f"{m}_{j}" for m in METRICS for j in ("primary", "secondary")])
    flags = [
        ((scored[f"aligned_{j}"] < misaligned_below) & (scored[f"coherent_{j}"] > coherent_above)).to_numpy()
        for j in ("primary", "secondary")
    ]
    rows.append({"metric": MISALIGNED, **cohens_kappa(*flags)})
    return rows


def agreement_table(
    pairs: pl.DataFrame,
    judge: str,
    min_answers: int,
    misaligned_below: float = MISALIGNED_BELOW,
    coherent_above: float = COHERENT_ABOVE,
) -> pl.DataFrame:
    """Agreement over every answer (scope all) and per condition with enough answers."""
    rows = [{"judge": judge, "scope": "all", **row} for row in _rows(pairs, misaligned_below, coherent_above)]
    for keys, part in pairs.group_by(CONDITION, maintain_order=True):
        if part.height < min_answers:
            continue
        condition = dict(zip(CONDITION, keys, strict=True))
        rows += [{"judge": judge, "scope": "condition", **condition, **row}
                 for row in _rows(part, misaligned_below, coherent_above)]  # fmt: skip
    table = pl.DataFrame(rows, schema_overrides=COLUMNS, infer_schema_length=None)
    return table.select(
        [pl.col(c).cast(t) if c in table.columns else pl.lit(None, t).alias(c) for c, t in COLUMNS.items()]
    )
