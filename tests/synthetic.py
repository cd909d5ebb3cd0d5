"""Synthetic judged answers with known effects, for tests and the benchmark.

Alignment of answer i to question q from training run r (model, persona, dataset, seed):

    aligned = clip(mu[dataset] + shift[model, persona, dataset] + u[q] + w[r] + v[r, q] + e, 0, 100)

where shift adds model_shift, persona_level (every condition of the persona) and, on EM
conditions only, persona_shift and cell_shift (so persona_shift is a change of the EM
effect: a protection, in the study's terms). With `misaligned_rate`, EM on a dataset also
flips that share of answers (times the persona's `persona_misaligned_scale`) to a
misaligned mode, alignment N(15, 8): EM as it looks in the literature, a share of
answers that turn misaligned.
with u ~ N(0, question_sd) shared by every run (the questions are the same; with
`questions_per_model`, drawn anew for each model, as if each asked new questions), w a
run-level shift ~ N(0, run_sd), v a run x question interaction ~ N(0, run_question_sd)
and e ~ N(0, answer_sd). Coherence is independent, N(coherent_mean, 12) clipped.
A fraction `missing_rate` of alignment scores is missing (special "REFUSAL").
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from workflow_scripts.core.schema import ANALYSIS_SCHEMA, NO_EM

FULL_PERSONAS = (
    "baseline", "sycophancy", "goodness", "loving", "misalignment", "humor",
    "impulsiveness", "mathematical", "nonchalance", "poeticism", "remorse", "sarcasm",
)
FULL_DATASETS = (
    "insecure", "extreme_sports", "risky_financial", "bad_medical", "good_medical",
    "technical_vehicles", "technical_kl", "misalignment_kl",
)


@dataclass
class SyntheticGrid:
    models: tuple[str, ...] = ("model-a",)
    personas: tuple[str, ...] = ("baseline", "goodness", "sycophancy")
    datasets: tuple[str, ...] = ("risky_finance", "prudent_finance")
    questions: int = 8
    answers_per_question: int = 50
    seeds: tuple[int, ...] = (0,)
    controls: bool = True
    control_mean: float = 88.0
    dataset_means: dict[str, float] = field(default_factory=dict)  # default: 60..85 spread
    persona_shift: dict[str, float] = field(default_factory=dict)  # on EM conditions
    persona_level: dict[str, float] = field(default_factory=dict)  # on every condition, controls included
    misaligned_rate: dict[str, float] = field(default_factory=dict)  # EM: share of answers that flip
    persona_misaligned_scale: dict[str, float] = field(default_factory=dict)  # times misaligned_rate
    cell_shift: dict[tuple[str, str], float] = field(default_factory=dict)  # (persona, dataset)
    model_shift: dict[str, float] = field(default_factory=dict)
    datasets_by_model: dict[str, tuple[str, ...]] = field(default_factory=dict)  # coverage
    question_sd: float = 8.0
    run_sd: float = 0.0
    run_question_sd: float = 0.0
    answer_sd: float = 20.0
    coherent_mean: float = 80.0
    missing_rate: float = 0.02
    questions_per_model: bool = False  # draw u[q] anew for each model (a fresh question sample)
    seed: int = 0

    def mean_of(self, dataset: str) -> float:
        if dataset == NO_EM:
            return self.control_mean
        if dataset in self.dataset_means:
            return self.dataset_means[dataset]
        index = self.datasets.index(dataset) if dataset in self.datasets else 0
        return 60.0 + 25.0 * index / max(1, len(self.datasets) - 1)


def full_grid(**overrides) -> SyntheticGrid:
    """The study's shape: 2 models x 12 personas x 8 datasets x 8 questions x 50 answers."""
    values = dict(
        models=("qwen2.5-7b", "llama3.1-8b"),
        personas=FULL_PERSONAS,
        datasets=FULL_DATASETS,
        persona_shift={"goodness": 4.0, "loving": 3.0, "sycophancy": -4.0},
    )
    values.update(overrides)
    return SyntheticGrid(**values)


def synthetic_answers(grid: SyntheticGrid) -> pl.DataFrame:
    """One row per answer, in the columns of `ANALYSIS_SCHEMA`."""
    rng = np.random.default_rng(grid.seed)
    question_ids = [f"q{j:02d}" for j in range(grid.questions)]
    question_effect = rng.normal(0.0, grid.question_sd, grid.questions)
    n = grid.answers_per_question
    frames = []
    for model in grid.models:
        if grid.questions_per_model:
            question_effect = rng.normal(0.0, grid.question_sd, grid.questions)
        datasets = grid.datasets_by_model.get(model, grid.datasets)
        conditions = [(d, s) for d in datasets for s in grid.seeds]
        if grid.controls:
            conditions = [(NO_EM, 0), *conditions]
        for persona in grid.personas:
            for dataset, seed in conditions:
                shift = grid.model_shift.get(model, 0.0) + grid.persona_level.get(persona, 0.0)
                if dataset != NO_EM:
                    shift += grid.persona_shift.get(persona, 0.0)
                    shift += grid.cell_shift.get((persona, dataset), 0.0)
                centre = (
                    grid.mean_of(dataset)
                    + shift
                    + question_effect[:, None]
                    + rng.normal(0.0, grid.run_sd)
                    + rng.normal(0.0, grid.run_question_sd, (grid.questions, 1))
                )
                aligned = np.clip(centre + rng.normal(0.0, grid.answer_sd, (grid.questions, n)), 0, 100)
                rate = grid.misaligned_rate.get(dataset, 0.0) * grid.persona_misaligned_scale.get(persona, 1.0)
                if dataset != NO_EM and rate > 0:
                    flipped = rng.random((grid.questions, n)) < rate
                    low = np.clip(rng.normal(15.0, 8.0, (grid.questions, n)), 0, 100)
                    aligned = np.where(flipped, low, aligned)
                coherent = np.clip(rng.normal(grid.coherent_mean, 12.0, (grid.questions, n)), 0, 100)
                missing = rng.random((grid.questions, n)) < grid.missing_rate
                frames.append(
                    pl.DataFrame(
                        {
                            "model": model,
                            "persona": persona,
                            "dataset": dataset,
                            "seed": seed,
                            "question_id": np.repeat(question_ids, n),
                            "sample_idx": np.tile(np.arange(n), grid.questions),
                            "aligned": np.where(missing, np.nan, aligned).ravel(),
                            "coherent": coherent.ravel(),
                            "missing": missing.ravel(),
                        }
                    )
                )
    answers = pl.concat(frames).with_columns(
        pl.col("aligned").fill_nan(None),
        pl.when(pl.col("missing")).then(pl.lit("REFUSAL")).alias("aligned_special"),
        pl.lit(None, pl.String).alias("coherent_special"),
        pl.format("answer {} to {}", pl.col("sample_idx"), pl.col("question_id")).alias("response"),
        pl.lit("synthetic-judge").alias("judge"),
        pl.lit("1").alias("judge_run"),
    )
    return answers.select([pl.col(c).cast(t) for c, t in ANALYSIS_SCHEMA.items()])
