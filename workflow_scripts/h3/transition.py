"""Transition detection on a behavioural curve over EM training (declared here).

The curve is the misaligned share (among coherent answers, 0-100) at each evaluated
checkpoint step. Checkpoints are log-spaced, so the model is a logistic in log10(step):

    y(x) = low + (high - low) / (1 + exp(-slope * (x - x0))),   x = log10(step)

fitted by least squares (scipy.optimize.curve_fit) with slope >= 0 (misalignment
rises). The transition step is 10**x0. "No transition within training" is an outcome
of its own: the fit fails, the rise high - low is below `min_rise` points, or x0 lies
outside the evaluated steps.

Interval: a cluster bootstrap over questions (and over seeds first, where a run is
replicated): each resample rebuilds the curve from the resampled (seed, question)
cells and refits. The CI is the percentile interval of log10(step) over the resamples
that find a transition; `transition_share` is the share of resamples that find one.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NO_TRANSITION = "no transition within training"
TRANSITION = "transition"


@dataclass(frozen=True)
class TransitionSettings:
    min_rise: float = 10.0  # points of the misaligned share
    bootstrap: int = 200
    seed: int = 0
    alpha: float = 0.05


def logistic(x: np.ndarray, low: float, high: float, slope: float, x0: float) -> np.ndarray:
    return low + (high - low) / (1.0 + np.exp(-slope * (x - x0)))


def fit_transition(steps: Sequence[int], values: Sequence[float], min_rise: float) -> dict:
    """The fitted logistic on one curve and whether it is a transition (module doc)."""
    x = np.log10(np.asarray(steps, dtype=float))
    y = np.asarray(values, dtype=float)
    ok = ~np.isnan(y)
    x, y = x[ok], y[ok]
    none = {"status": NO_TRANSITION, "step": None, "log10_step": None, "rise": None}
    if x.size < 4 or np.ptp(y) < min_rise:
        return none | {"reason": "too few points" if x.size < 4 else "no rise of min_rise"}
    span = max(float(np.ptp(x)), 1e-6)
    start = [float(y.min()), float(y.max()), 4.0 / span, float(np.median(x))]
    bounds = ([-1.0, -1.0, 0.0, x.min() - span], [101.0, 101.0, 100.0 / span, x.max() + span])
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            (low, high, slope, x0), _ = _curve_fit(x, y, start, bounds)
    except (RuntimeError, ValueError):
        return none | {"reason": "fit failed"}
    rise = float(high - low)
    if rise < min_rise:
        return none | {"reason": "fitted rise below min_rise", "rise": rise}
    if not (x.min() <= x0 <= x.max()):
        return none | {"reason": "midpoint outside the evaluated steps", "rise": rise}
    return {"status": TRANSITION, "step": float(10**x0), "log10_step": float(x0), "rise": rise,
            "slope": float(slope), "low": float(low), "high": float(high), "reason": ""}


def _curve_fit(x, y, start, bounds):
    from scipy.optimize import curve_fit

    return curve_fit(logistic, x, y, p0=start, bounds=bounds, maxfev=5000)


def curve_from_counts(misaligned: np.ndarray, coherent: np.ndarray) -> np.ndarray:
    """Misaligned share (points of %) per step from counts summed over cells
    (misaligned, coherent: cells x steps); NaN where a step has no coherent answer."""
    m, c = misaligned.sum(axis=0), coherent.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(c > 0, 100.0 * m / np.where(c > 0, c, 1), np.nan)


def resample_cells(seeds: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cell indices of one cluster-bootstrap resample: seeds with replacement, then the
    questions of each drawn seed with replacement (cells are (seed, question))."""
    unique = np.unique(seeds)
    drawn = rng.choice(unique, size=unique.size, replace=True) if unique.size > 1 else unique
    chosen = []
    for seed in drawn:
        cells = np.flatnonzero(seeds == seed)
        chosen.append(rng.choice(cells, size=cells.size, replace=True))
    return np.concatenate(chosen)


def detect_transition(
    steps: Sequence[int],
    misaligned: np.ndarray,
    coherent: np.ndarray,
    cell_seeds: Sequence[int],
    settings: TransitionSettings,
) -> dict:
    """Point fit and bootstrap CI of the transition step of one curve.

    misaligned, coherent: counts per (seed, question) cell (rows) and step (columns).
    """
    misaligned, coherent = np.asarray(misaligned, float), np.asarray(coherent, float)
    seeds = np.asarray(cell_seeds)
    point = fit_transition(steps, curve_from_counts(misaligned, coherent), settings.min_rise)
    rng = np.random.default_rng(settings.seed)
    draws = []
    for _ in range(settings.bootstrap):
        cells = resample_cells(seeds, rng)
        fit = fit_transition(steps, curve_from_counts(misaligned[cells], coherent[cells]), settings.min_rise)
        draws.append(fit["log10_step"] if fit["status"] == TRANSITION else math.nan)
    found = np.array([d for d in draws if not math.isnan(d)])
    result = {**point, "transition_share": (found.size / settings.bootstrap) if settings.bootstrap else None,
              "low": None, "high": None, "draws": draws}
    if point["status"] == TRANSITION and found.size >= 2:
        lo, hi = np.percentile(found, [100 * settings.alpha / 2, 100 * (1 - settings.alpha / 2)])
        result |= {"low": float(10**lo), "high": float(10**hi)}
    return result


def compare_steps(persona_draws: Sequence[float], reference_draws: Sequence[float],
                  persona: dict, reference: dict, alpha: float) -> dict:
    """Persona vs reference on log10 transition step: the difference (persona later:
    positive), its percentile CI over paired resamples where both find a transition,
    and a two-sided bootstrap p. A side without a transition gives an outcome, no p."""
    if persona["status"] != TRANSITION or reference["status"] != TRANSITION:
        which = [name for name, r in (("persona", persona), ("reference", reference)) if r["status"] != TRANSITION]
        return {"status": f"{NO_TRANSITION}: {' and '.join(which)}", "estimate": None, "low": None,
                "high": None, "p": None}
    a, b = np.asarray(persona_draws, float), np.asarray(reference_draws, float)
    both = ~np.isnan(a) & ~np.isnan(b)
    diff = a[both] - b[both]
    estimate = float(persona["log10_step"] - reference["log10_step"])
    if diff.size < 2:
        return {"status": "insufficient data: too few resamples with both transitions", "estimate": estimate,
                "low": None, "high": None, "p": None}
    lo, hi = np.percentile(diff, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    p = min(1.0, 2 * min((diff <= 0).mean(), (diff >= 0).mean()))
    p = max(p, 1.0 / (diff.size + 1))  # a bootstrap p is never exactly 0
    return {"status": "ok", "estimate": estimate, "low": float(lo), "high": float(hi), "p": float(p)}
