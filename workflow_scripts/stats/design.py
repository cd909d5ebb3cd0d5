"""Design calculator: the smallest protection a grid can detect, and the seeds it needs.

Variance components, per model and measure (misaligned share among coherent answers in
points of %, mean alignment), estimated from judged answers by the method of moments:

- sd_answer: within a (run, question) cell, between answers (for the share:
  the Bernoulli SD of one coherent answer);
- sd_run_question: the run x question interaction (cell means around their run and
  question means, less the answer noise); the question main effect cancels, since
  every condition answers the same questions;
- sd_run: seed to seed, the SD of a condition's run means over its EM seeds, less what
  the two terms above put into a run mean. Needs a condition with several seeds; with
  one seed everywhere it is unknown and the minimum detectable effect is a lower bound.

For k seeds, Q questions and n answers per question, one EM condition's mean has
variance sd_run^2 / k + sd_run_question^2 / (k Q) + sd_answer^2 / (k Q n); a no-EM
control (one run, no EM training) sd_run_question^2 / Q + sd_answer^2 / (Q n). The
protection adds and subtracts two of each, so

    Var(protection) = 2 Var(EM condition) + 2 Var(control)
    MDE = (t[1 - alpha/2, df] + t[power, df]) x sqrt(Var(protection))

with df = 2 (k - 1) for k >= 2 (the p-value's run-level degrees of freedom) and Q - 1
for one seed. Per test at `alpha`: the Benjamini-Hochberg family makes the real
threshold smaller. Print it before a run:

    python -m workflow_scripts.stats.design --configfile config/config.yaml \\
        --from results/final/answers.parquet
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np
import polars as pl
from scipy import stats

from workflow_scripts.core.io_utils import read_parquet, read_yaml
from workflow_scripts.stats.settings import StatsSettings

MAX_SEEDS = 50


MEASURE_NAMES = {"misaligned_share": "misaligned share", "mean_alignment": "mean alignment"}


def _cells(flagged: pl.DataFrame, scored: pl.DataFrame, measure: str) -> pl.DataFrame:
    """Per (model, persona, dataset, seed, question): n, mean and within-cell variance."""
    keys = ["model", "persona", "dataset", "seed", "question_id"]
    if measure == "misaligned_share":
        value = 100.0 * pl.col("misaligned").fill_null(False).cast(pl.Float64)
        source = flagged.filter(pl.col("coherent_answer").fill_null(False))
    else:
        value = pl.col("aligned")
        source = scored
    return source.group_by(keys).agg(
        pl.len().alias("n"), value.mean().alias("mean"), value.var(ddof=1).alias("var")
    ).filter(pl.col("n") >= 2)


def variance_components(flagged: pl.DataFrame, scored: pl.DataFrame, measure: str) -> dict[str, dict]:
    """Per model: sd_answer, sd_run_question, sd_run (NaN where no condition has several
    seeds), the mean answers per cell and the number of questions."""
    out = {}
    cells = _cells(flagged, scored, measure)
    for (model,), part in cells.group_by(["model"], maintain_order=True):
        within = float((part["var"] * (part["n"] - 1)).sum() / (part["n"] - 1).sum())
        n_bar = float(part["n"].mean())
        runs = part.with_columns(pl.concat_str(["persona", "dataset", "seed"], separator="|").alias("run"))
        wide = runs.pivot(on="question_id", index="run", values="mean").drop("run").to_numpy()
        wide = wide[~np.isnan(wide).any(axis=1)]
        interaction = float("nan")
        if wide.shape[0] >= 2 and wide.shape[1] >= 2:
            resid = wide - wide.mean(axis=1, keepdims=True) - wide.mean(axis=0, keepdims=True) + wide.mean()
            rq = float((resid**2).sum() / ((wide.shape[0] - 1) * (wide.shape[1] - 1)))
            interaction = max(rq - within / n_bar, 0.0)
        questions = int(part["question_id"].n_unique())
        run_means = runs.group_by(["persona", "dataset", "seed"]).agg(pl.col("mean").mean())
        replicated = (
            run_means.group_by(["persona", "dataset"]).agg(pl.len().alias("k"), pl.col("mean").var(ddof=1).alias("v"))
            .filter(pl.col("k") >= 2)
        )
        run = float("nan")
        if replicated.height:
            noise = (interaction + within / n_bar) / questions
            run = max(float(replicated["v"].mean()) - noise, 0.0)
        out[model] = {"sd_answer": math.sqrt(within), "sd_run_question": math.sqrt(interaction),
                      "sd_run": math.sqrt(run) if not math.isnan(run) else float("nan"),
                      "answers_per_cell": n_bar, "questions": questions}
    return out


def protection_variance(sd_answer: float, sd_run_question: float, sd_run: float, seeds: int,
                        questions: int, n: int) -> float:
    run = 0.0 if math.isnan(sd_run) else sd_run**2
    em = run / seeds + sd_run_question**2 / (seeds * questions) + sd_answer**2 / (seeds * questions * n)
    control = sd_run_question**2 / questions + sd_answer**2 / (questions * n)
    return 2 * em + 2 * control


def degrees_of_freedom(seeds: int, questions: int) -> int:
    return 2 * (seeds - 1) if seeds >= 2 else questions - 1


def minimum_detectable(components: dict, seeds: int, questions: int, n: int, alpha: float, power: float) -> float:
    df = degrees_of_freedom(seeds, questions)
    if df < 1:
        return float("nan")
    variance = protection_variance(components["sd_answer"], components["sd_run_question"],
                                   components["sd_run"], seeds, questions, n)
    return float((stats.t.ppf(1 - alpha / 2, df) + stats.t.ppf(power, df)) * math.sqrt(variance))


def seeds_needed(components: dict, effect: float, questions: int, n: int, alpha: float, power: float) -> int | None:
    """The fewest seeds (2..MAX_SEEDS) whose minimum detectable protection is <= effect."""
    for k in range(2, MAX_SEEDS + 1):
        if minimum_detectable(components, k, questions, n, alpha, power) <= effect:
            return k
    return None


def design_table(
    flagged: pl.DataFrame, scored: pl.DataFrame, settings: StatsSettings,
    seeds: int | None = None, n: int | None = None, questions: int | None = None,
    run_sd: float | None = None,
) -> pl.DataFrame:
    """Per model and measure: the variance components of these answers and, for the
    configured seeds, n and questions (else those observed), the minimum detectable
    protection and the seeds needed to detect `settings.design_effect`."""
    rows = []
    for measure in ("misaligned_share", "mean_alignment"):
        for model, components in variance_components(flagged, scored, measure).items():
            source = "estimated"
            if run_sd is not None:
                components = {**components, "sd_run": run_sd}
                source = "assumed"
            elif math.isnan(components["sd_run"]):
                source = "unknown"
            k = seeds or len(settings.seeds) or 1
            answers = n or settings.samples_per_question or round(components["answers_per_cell"])
            q = questions or components["questions"]
            mde = minimum_detectable(components, k, q, answers, settings.alpha, settings.power)
            needed = seeds_needed(components, settings.design_effect, q, answers, settings.alpha, settings.power)
            rows.append({
                "model": model, "measure": measure, "seeds": k, "n": answers, "questions": q,
                "alpha": settings.alpha, "power_pct": round(100 * settings.power),
                "sd_answer": components["sd_answer"], "sd_run_question": components["sd_run_question"],
                "sd_run": components["sd_run"], "run_sd_source": source, "mde": mde,
                "effect": settings.design_effect, "seeds_needed": needed,
            })
    schema = {"model": pl.String, "measure": pl.String, "seeds": pl.Int64, "n": pl.Int64, "questions": pl.Int64,
              "alpha": pl.Float64, "power_pct": pl.Int64, "sd_answer": pl.Float64, "sd_run_question": pl.Float64,
              "sd_run": pl.Float64, "run_sd_source": pl.String, "mde": pl.Float64, "effect": pl.Float64,
              "seeds_needed": pl.Int64}
    return pl.DataFrame(rows, schema=schema)


def design_sentence(row: dict) -> str:
    """The calculator's result in words (every number a cell of `row`)."""
    measure = MEASURE_NAMES[row["measure"]]
    unit = "points of %" if row["measure"] == "misaligned_share" else "points"
    bound = " at least" if row["run_sd_source"] == "unknown" else ""
    mde = "–" if row["mde"] is None or math.isnan(row["mde"]) else f"{row['mde']:.1f}"
    text = (
        f"with {row['seeds']} seed(s), n = {row['n']} answers per question and {row['questions']} questions, "
        f"this grid detects a protection of{bound} {mde} {unit} in {measure} "
        f"({row['power_pct']}% power, two-sided alpha {row['alpha']:g} per test)"
    )
    if row["seeds_needed"] is None:
        text += f"; no number of seeds the calculator tries detects {row['effect']:g} {unit}"
    else:
        text += f"; detecting {row['effect']:g} {unit} needs {row['seeds_needed']} seeds"
    if row["run_sd_source"] == "unknown":
        text += " (seed-to-seed variance unknown: no condition has several seeds)"
    return text


def main(argv: list[str] | None = None) -> int:
    import yaml

    from workflow_scripts.core.misalignment import coherence_filter, with_misaligned
    from workflow_scripts.core.schema import BASE_VARIANT, prompt_variant
    from workflow_scripts.stats.settings import SCHEMA_FILE, settings_from_config

    parser = argparse.ArgumentParser(
        prog="python -m workflow_scripts.stats.design",
        description="Minimum detectable protection and the seeds needed, for a config's grid.",
    )
    parser.add_argument("--configfile", type=Path, required=True)
    parser.add_argument("--from", dest="answers", type=Path, required=True,
                        help="judged answers whose variance components to use (a finished run's "
                             "results/final/answers.parquet, or an imported study's)")
    parser.add_argument("--run-sd", type=float, default=None,
                        help="assume this seed-to-seed SD (where the answers have one seed per condition)")
    args = parser.parse_args(argv)
    config = read_yaml(args.configfile) or {}
    schema = yaml.safe_load(SCHEMA_FILE.read_text())["properties"]
    seeds = config.get("seeds", schema["seeds"]["default"])
    n = (config.get("sampling") or {}).get("n", schema["sampling"]["properties"]["n"]["default"])
    ids = (config.get("questions") or {}).get("ids")
    roles = {d: (e or {}).get("role") for d, e in (config.get("datasets") or {}).items()}
    settings = settings_from_config(config.get("statistics") or {}, roles=roles, seeds=seeds,
                                    samples_per_question=n, where=str(args.configfile))
    answers = read_parquet(args.answers)
    if "prompt_variant" not in answers.columns:
        answers = answers.with_columns(prompt_variant())
    answers = answers.filter(pl.col("prompt_variant") == BASE_VARIANT)
    flagged = with_misaligned(answers, settings.misaligned_below, settings.coherent_above)
    scored = coherence_filter(flagged.filter(pl.col("aligned").is_not_null()), settings.coherence_filter)
    table = design_table(flagged, scored, settings, questions=len(ids) if ids else None, run_sd=args.run_sd)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=200, float_precision=2):
        print(table)
    for row in table.to_dicts():
        print(f"{row['model']}: {design_sentence(row)}.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
