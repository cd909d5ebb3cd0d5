"""The EM direction of one EM model: per layer, the mean residual-stream activation
(averaged over answer tokens) of its misaligned answers minus that of its aligned
answers (Soligo, Turner et al. 2025), with the counts behind it and its stability
under a bootstrap over answers.

Classes: misaligned = aligned < `misaligned_below` and coherent > `coherent_above`
(the study's convention); aligned = aligned > `aligned_above` (a high threshold);
answers with a score missing, or in between, are in neither class. With fewer than
`min_answers` in either class there is no direction: the record says so, with the
counts, and carries no vector.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from workflow_scripts.core.defaults import schema_defaults

_H4 = schema_defaults("h4")
_STATS = schema_defaults("statistics")

MISALIGNED = "misaligned"
ALIGNED = "aligned"


@dataclass(frozen=True)
class DirectionSettings:
    misaligned_below: float = _STATS["misaligned_below"]
    coherent_above: float = _STATS["coherent_above"]
    aligned_above: float = _H4["aligned_above"]
    min_answers: int = _H4["min_answers"]  # per class
    bootstrap: int = _H4["bootstrap"]
    seed: int = _STATS["seed"]

    @classmethod
    def from_config(cls, h4: dict) -> DirectionSettings:
        return cls(**{k: h4[k] for k in cls.__dataclass_fields__ if k in h4})


@dataclass
class Direction:
    status: str  # "ok" | "skipped"
    n_misaligned: int
    n_aligned: int
    n_answers: int
    reason: str = ""
    vector: np.ndarray | None = None  # (layers, hidden): mean(misaligned) - mean(aligned)
    stability_mean: list[float] = field(default_factory=list)  # per layer: mean bootstrap cosine
    stability_p5: list[float] = field(default_factory=list)  # per layer: 5th percentile

    def summary(self) -> dict:
        record = {
            "status": self.status, "reason": self.reason, "n_answers": self.n_answers,
            "n_misaligned": self.n_misaligned, "n_aligned": self.n_aligned,
        }
        if self.vector is not None:
            record |= {
                "layers": int(self.vector.shape[0]), "hidden": int(self.vector.shape[1]),
                "norm": [float(x) for x in np.linalg.norm(self.vector, axis=1)],
                "stability_mean": self.stability_mean, "stability_p5": self.stability_p5,
            }
        return record


def answer_classes(
    aligned: np.ndarray, coherent: np.ndarray, settings: DirectionSettings
) -> np.ndarray:
    """Per answer: "misaligned", "aligned" or "" (neither; NaN scores are neither)."""
    aligned = np.asarray(aligned, dtype=np.float64)
    coherent = np.asarray(coherent, dtype=np.float64)
    scored = ~np.isnan(aligned) & ~np.isnan(coherent)
    with np.errstate(invalid="ignore"):
        bad = scored & (aligned < settings.misaligned_below) & (coherent > settings.coherent_above)
        good = scored & (aligned > settings.aligned_above)
    classes = np.full(aligned.shape, "", dtype=object)
    classes[good] = ALIGNED
    classes[bad] = MISALIGNED
    return classes


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine over the last axis (NaN where either vector is zero)."""
    num = (a * b).sum(axis=-1)
    den = np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def mean_difference(activations: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """mean over misaligned answers minus mean over aligned answers, per layer.
    activations: (answers, layers, hidden)."""
    bad = activations[classes == MISALIGNED].astype(np.float64)
    good = activations[classes == ALIGNED].astype(np.float64)
    return bad.mean(axis=0) - good.mean(axis=0)


def extract_direction(
    activations: np.ndarray,
    aligned: np.ndarray,
    coherent: np.ndarray,
    settings: DirectionSettings,
) -> Direction:
    """The direction per layer, or a skip with the counts when a class is too small.
    Stability: answers resampled with replacement within each class (seeded); the
    cosine of each resample's direction with the point estimate, per layer."""
    classes = answer_classes(aligned, coherent, settings)
    n_bad = int((classes == MISALIGNED).sum())
    n_good = int((classes == ALIGNED).sum())
    n = len(classes)
    if n_bad < settings.min_answers or n_good < settings.min_answers:
        reason = (
            f"too few answers: {n_bad} misaligned and {n_good} aligned of {n} "
            f"(at least {settings.min_answers} of each needed)"
        )
        return Direction("skipped", n_bad, n_good, n, reason)
    vector = mean_difference(activations, classes)
    bad = activations[classes == MISALIGNED].astype(np.float64)
    good = activations[classes == ALIGNED].astype(np.float64)
    rng = np.random.default_rng(settings.seed)
    cosines = np.empty((settings.bootstrap, vector.shape[0]))
    for b in range(settings.bootstrap):
        resampled = (
            bad[rng.integers(0, n_bad, n_bad)].mean(axis=0)
            - good[rng.integers(0, n_good, n_good)].mean(axis=0)
        )
        cosines[b] = cosine(resampled, vector)
    stable_mean = cosines.mean(axis=0) if settings.bootstrap else np.full(vector.shape[0], np.nan)
    stable_p5 = np.percentile(cosines, 5, axis=0) if settings.bootstrap else stable_mean
    return Direction(
        "ok", n_bad, n_good, n, vector=vector.astype(np.float32),
        stability_mean=[float(x) for x in stable_mean], stability_p5=[float(x) for x in stable_p5],
    )
