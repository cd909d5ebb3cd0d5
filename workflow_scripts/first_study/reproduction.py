"""The "Reproduction" section of RESULTS.md: the first study's method on its own
answers, next to the corrected method, and where the conclusions change.

Reads every judge run of the import (results/imported/first_study_runs.parquet) and
writes results/final/tables/reproduction.md plus its tables as TSV (the persona
table, the per-cell comparison, the persona-effect check, judge reliability).
"""

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from workflow_scripts.core.io_utils import atomic_path
from workflow_scripts.core.schema import NO_EM
from workflow_scripts.first_study import corrected
from workflow_scripts.first_study import method as first
from workflow_scripts.first_study.importer import CONDITION, apply_policy
from workflow_scripts.first_study.reliability import ALL, judge_reliability

log = logging.getLogger(__name__)


@dataclass
class Reproduction:
    """Every table of the section, and its Markdown."""

    persona_table: pl.DataFrame
    comparisons: pl.DataFrame
    persona_effect: pl.DataFrame
    reliability: pl.DataFrame
    markdown: str


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if value == 0:
        return "< 1e-300"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def _interval(low: float | None, high: float | None, digits: int = 1) -> str:
    return f"[{_fmt(low, digits)}, {_fmt(high, digits)}]"


def reproduce(
    runs: pl.DataFrame,
    statistics: Mapping[str, Any],
    policy: str = "largest_run",
    default_dataset: str = "insecure",
    first_study_resamples: int = 10_000,
) -> Reproduction:
    """Both methods on the imported runs, and the section's Markdown."""
    settings = corrected.CorrectedSettings.from_statistics(statistics)

    seen = first.as_first_study_saw_it(runs, default_dataset)
    persona_table = first.with_published(first.persona_table(seen, resamples=first_study_resamples))
    first_tests = first.persona_vs_reference(seen, settings.reference)

    answers = corrected.one_row_per_answer(apply_policy(runs, policy))
    fixed = corrected.compare_to_reference(answers, settings)
    comparisons = fixed.join(
        first_tests.select(
            "model",
            "persona",
            "dataset",
            pl.col("difference").alias("first_study_difference"),
            "p_two_sided",
            "p_bh_all_cells",
        ),
        on=["model", "persona", "dataset"],
        how="left",
    ).with_columns(
        pl.struct("first_study_difference", "p_two_sided", "direction")
        .map_elements(
            lambda r: (
                None
                if r["direction"] is None or r["p_two_sided"] is None
                else first.cell_call(r["first_study_difference"], r["p_two_sided"], r["direction"])
            ),
            return_dtype=pl.String,
        )
        .alias("first_study_call")
    )
    effect = corrected.persona_effect(answers)
    reliability = judge_reliability(runs)
    markdown = _markdown(
        runs, policy, settings, persona_table, comparisons, answers, effect, reliability
    )
    return Reproduction(persona_table, comparisons, effect, reliability, markdown)


def hypothesis_summary(comparisons: pl.DataFrame, hypotheses: Mapping[str, Any]) -> pl.DataFrame:
    """Per hypothesis x persona x model: how many datasets each method counts as support."""
    rows = []
    for name, hypothesis in hypotheses.items():
        for persona in hypothesis["personas"]:
            cells = comparisons.filter(pl.col("persona") == persona)
            for (model,), group in cells.group_by(["model"], maintain_order=True):
                total = group.height
                first_support = int((group["first_study_call"] == "supports").sum())
                first_opposite = int((group["first_study_call"] == "opposite").sum())
                fixed_support = int(group["supports"].fill_null(False).sum())
                robust = int(
                    (group["supports"].fill_null(False) & group["cluster_ci_supports"]).sum()
                )
                rows.append(
                    {
                        "hypothesis": name,
                        "direction": hypothesis["direction"],
                        "persona": persona,
                        "model": model,
                        "datasets": total,
                        "first_study_supports": first_support,
                        "first_study_opposite": first_opposite,
                        "first_study_verdict": first.verdict(first_support, total),
                        "corrected_supports": fixed_support,
                        "corrected_verdict": first.verdict(fixed_support, total),
                        "corrected_and_cluster_ci": robust,
                    }
                )
    return pl.DataFrame(rows).sort(["hypothesis", "persona", "model"]) if rows else pl.DataFrame()


def _markdown(
    runs: pl.DataFrame,
    policy: str,
    settings: corrected.CorrectedSettings,
    persona_table: pl.DataFrame,
    comparisons: pl.DataFrame,
    answers: pl.DataFrame,
    effect: pl.DataFrame,
    reliability: pl.DataFrame,
) -> str:
    out: list[str] = ["## Reproduction of the first study", ""]
    conditions = runs.select(CONDITION).unique().height
    repeated = runs.filter(pl.col("runs_of_condition") > 1).select(CONDITION).unique().height
    kept = apply_policy(runs, policy)
    out += [
        f"Imported: {runs['source_file'].n_unique()} judge-run files, {conditions} conditions "
        f"(model x persona x dataset; {repeated} judged more than once), "
        f"{runs.height:,} judged answers in all runs. Policy `{policy}` keeps {kept.height:,} "
        f"answers ({kept['aligned'].is_not_null().sum():,} with an alignment score). "
        f"Judge: {', '.join(sorted(runs['judge'].unique()))} (text-parsed scores). "
        "One EM training run per condition: the unit of replication has n = 1 everywhere, "
        "so no test below separates a persona's effect from its training run's luck.",
        "",
    ]
    summary = hypothesis_summary(comparisons, settings.hypotheses)
    out += _changes(
        persona_table, comparisons, summary, answers, effect, reliability, runs, settings
    )
    out += _persona_section(persona_table)
    out += _hypothesis_section(summary, comparisons, settings)
    out += _pooling_section(answers, settings.reference)
    out += _effect_section(effect)
    out += _reliability_section(reliability, runs)
    out += [
        "### Method notes",
        "",
        "- First-study method: `workflow_scripts/first_study/method.py` (largest run per "
        "condition, persona means pooled over its datasets, t-interval and percentile "
        "bootstrap of answers with `default_rng(42)`, two-sided Mann-Whitney per dataset, "
        "verdicts from uncorrected p, BH over every cell of a model). Its BH family here also "
        "holds the custom-constitution personas of `constitutional_em/`, which the first "
        "study's final script did not read; only its BH column is affected.",
        "- Corrected method: `workflow_scripts/first_study/corrected.py`, a minimal "
        "implementation of the statistics in docs/methods.md for this report (per dataset; cluster "
        f"bootstrap over questions, {settings.resamples:,} resamples, seed {settings.seed}; "
        "Mann-Whitney in the hypothesis's direction; BH per model over persona x EM-dataset "
        f"cells, reference and controls excluded; alpha {settings.alpha}). Judge replicates "
        "are averaged per answer first.",
        "",
    ]
    return "\n".join(out)


def _changes(
    persona_table: pl.DataFrame,
    comparisons: pl.DataFrame,
    summary: pl.DataFrame,
    answers: pl.DataFrame,
    effect: pl.DataFrame,
    reliability: pl.DataFrame,
    runs: pl.DataFrame,
    settings: corrected.CorrectedSettings,
) -> list[str]:
    lines = ["### Where the conclusions change", ""]
    matched = persona_table.filter(pl.col("matches_published").is_not_null())
    if matched.height:
        ok = int(matched["matches_published"].sum())
        lines.append(
            f"- **Reproduction.** The first study's method on these files gives its published "
            f"per-persona table: {ok} of {matched.height} published rows match (N exactly, "
            "mean and sd within 0.1)."
        )
    for row in summary.iter_rows(named=True):
        changed = row["first_study_verdict"] != row["corrected_verdict"]
        lines.append(
            f"- **{row['hypothesis']} ({row['persona']} {row['direction']} than "
            f"{settings.reference}), {row['model']}:** first-study method "
            f"{row['first_study_verdict']} ({row['first_study_supports']} of {row['datasets']} "
            f"datasets; {row['first_study_opposite']} significant the other way), corrected "
            f"{row['corrected_verdict']} ({row['corrected_supports']} of {row['datasets']}; "
            f"{row['corrected_and_cluster_ci']} also with a question-cluster interval that "
            f"excludes 0). {'**Verdict changes.**' if changed else 'Verdict unchanged.'}"
        )
    hyp = comparisons.filter(pl.col("direction").is_not_null())
    fragile = hyp.filter(pl.col("supports").fill_null(False) & ~pl.col("cluster_ci_supports"))
    if fragile.height:
        cells = ", ".join(
            f"{r['persona']}/{r['dataset']} ({r['model']})" for r in fragile.iter_rows(named=True)
        )
        lines.append(
            f"- **Independence of answers.** {fragile.height} of {hyp.height} hypothesis cells are "
            f"significant only when the answers count as independent: their difference's "
            f"interval from resampling questions includes 0 ({cells})."
        )
    lines += _pooling_changes(answers, settings.reference)
    if effect.height:
        answer_level = effect.filter(pl.col("kruskal_p") < settings.alpha)
        question_level = effect.filter(pl.col("friedman_p") < settings.alpha)
        sizes = "; ".join(
            f"{model}: ε² {g['epsilon_squared'].min():.3f} to {g['epsilon_squared'].max():.3f}"
            for (model,), g in effect.group_by(["model"], maintain_order=True)
        )
        lines.append(
            f"- **Do personas differ at all?** Across personas within a dataset, Kruskal-Wallis "
            f"on answers rejects equality in {answer_level.height} of {effect.height} "
            f"model x dataset cells; the Friedman test on per-question means (questions as "
            f"blocks) in {question_level.height} of {effect.height}. Share of the answers' "
            f"rank variance that personas explain, {sizes}."
        )
    overall = reliability.filter(
        (pl.col("model") == ALL) & (pl.col("persona") == ALL) & (pl.col("metric") == "aligned")
    )
    if overall.height:
        row = overall.row(0, named=True)
        spread = row["mean_spread"]
        lines.append(
            f"- **Judge replicates.** Re-judging the same answers gave the same alignment score "
            f"in {100 * row['exact_match']:.0f}% of run pairs (mean absolute difference "
            f"{row['mean_abs_diff']:.2f}, Krippendorff's alpha {row['krippendorff_alpha']:.3f}); "
            f"condition means moved by up to {spread:.2f} points between runs. `largest_run` "
            "picks among replicates by how many answers were scored, which is itself a judge outcome."
        )
    return [*lines, ""]


def _pooling_changes(answers: pl.DataFrame, reference: str) -> list[str]:
    means = corrected.means_over_common_datasets(answers)
    common = corrected.common_datasets(answers)
    lines = []
    for (model,), group in means.group_by(["model"], maintain_order=True):
        ref = group.filter(pl.col("persona") == reference)
        if not ref.height:
            continue
        ref_pooled, ref_common = ref["pooled_mean"][0], ref["common_mean"][0]
        flips = [
            f"{r['persona']} ({r['pooled_mean']:.1f} vs {ref_pooled:.1f} pooled over "
            f"{r['pooled_datasets']} vs {ref['pooled_datasets'][0]} datasets; "
            f"{r['common_mean']:.1f} vs {ref_common:.1f} on the common ones)"
            for r in group.iter_rows(named=True)
            if r["persona"] != reference
            and r["common_mean"] is not None
            and (r["pooled_mean"] - ref_pooled) * (r["common_mean"] - ref_common) < 0
        ]
        if flips:
            lines.append(
                f"- **Pooling over unequal dataset sets, {model}.** Compared with {reference} on "
                f"the datasets every condition has ({', '.join(common)}), these personas change "
                f"side: {'; '.join(flips)}."
            )
    models = sorted(means["model"].unique())
    if len(models) == 2:
        a, b = models
        wide = means.filter(pl.col("model") == a).join(
            means.filter(pl.col("model") == b), on="persona", suffix="_b"
        )
        flips = [
            f"{r['persona']} (pooled {r['pooled_mean']:.1f} vs {r['pooled_mean_b']:.1f}; "
            f"common {r['common_mean']:.1f} vs {r['common_mean_b']:.1f})"
            for r in wide.iter_rows(named=True)
            if (r["pooled_mean"] - r["pooled_mean_b"]) * (r["common_mean"] - r["common_mean_b"]) < 0
        ]
        if flips:
            lines.append(
                f"- **Cross-model ({a} vs {b}).** On the common datasets the ordering of the two "
                f"models reverses for: {'; '.join(flips)}."
            )
    return lines


def _persona_section(table: pl.DataFrame) -> list[str]:
    lines = [
        "### Alignment by persona, first study's method",
        "",
        "Largest judge run per condition, every answer with a score, pooled over the persona's "
        "datasets; 95% t-interval and percentile bootstrap interval treat answers as independent. "
        "Persona-only runs (no EM) keep the persona name of their files and stay rows of their "
        "own: they are never pooled with a persona's EM runs.",
        "",
    ]
    rows = [
        [
            r["model"],
            f"{r['persona']} (no EM)" if r.get("no_em") else r["persona"],
            str(r["datasets"]),
            f"{r['n']:,}",
            _fmt(r["mean"]),
            _fmt(r["sd"]),
            _interval(r["t_low"], r["t_high"]),
            _interval(r["boot_low"], r["boot_high"]),
            "–"
            if r["published_n"] is None
            else f"{r['published_n']:,} / {r['published_mean']:.1f} / {r['published_sd']:.1f}",
        ]
        for r in table.iter_rows(named=True)
    ]
    header = [
        "model",
        "persona",
        "datasets",
        "N",
        "mean",
        "sd",
        "t 95% CI",
        "bootstrap 95% CI",
        "published N / mean / sd",
    ]
    return lines + markdown_table(header, rows)


def _hypothesis_section(
    summary: pl.DataFrame, comparisons: pl.DataFrame, settings: corrected.CorrectedSettings
) -> list[str]:
    lines = [
        "### Hypothesis cells: first study's call vs the corrected test",
        "",
        "First study: two-sided Mann-Whitney on answers, uncorrected p < 0.05 and the expected "
        "sign. Corrected: Mann-Whitney in the expected direction, BH-adjusted q over the "
        "declared family; the interval of the difference resamples questions.",
        "",
    ]
    cells = comparisons.filter(pl.col("direction").is_not_null()).sort(
        ["model", "persona", "dataset"]
    )
    rows = [
        [
            r["model"],
            r["persona"],
            r["dataset"],
            f"{r['difference']:+.1f}",
            _interval(r["diff_low"], r["diff_high"]),
            f"{_fmt(r['cohens_d'], 2)} {_interval(r['d_low'], r['d_high'], 2)}",
            _p(r["p_two_sided"]),
            r["first_study_call"] or "–",
            _p(r["p"]),
            _p(r["q"]),
            "supports" if r["supports"] else "n.s.",
        ]
        for r in cells.iter_rows(named=True)
    ]
    header = [
        "model",
        "persona",
        "dataset",
        f"Δ vs {settings.reference}",
        "Δ cluster 95% CI",
        "Cohen's d [CI]",
        "p two-sided",
        "first study",
        "p directed",
        "q (BH)",
        "corrected",
    ]
    lines += markdown_table(header, rows)
    if summary.height:
        rows = [
            [
                r["hypothesis"],
                f"{r['persona']} {r['direction']}",
                r["model"],
                f"{r['first_study_verdict']} ({r['first_study_supports']}/{r['datasets']})",
                f"{r['corrected_verdict']} ({r['corrected_supports']}/{r['datasets']})",
                f"{r['corrected_and_cluster_ci']}/{r['datasets']}",
            ]
            for r in summary.iter_rows(named=True)
        ]
        lines += markdown_table(
            [
                "hypothesis",
                "persona",
                "model",
                "first study",
                "corrected",
                "corrected + cluster CI",
            ],
            rows,
        )
    return lines


def _pooling_section(answers: pl.DataFrame, reference: str) -> list[str]:
    means = corrected.means_over_common_datasets(answers)
    common = corrected.common_datasets(answers)
    rows = [
        [
            r["model"],
            r["persona"],
            _fmt(r["pooled_mean"]),
            str(r["pooled_datasets"]),
            _fmt(r["common_mean"]),
        ]
        for r in means.iter_rows(named=True)
    ]
    return [
        "### Pooled means vs means over common datasets",
        "",
        f"Pooled: every answer of the persona's EM datasets (the first study's basis). Common: the "
        f"mean of per-dataset means over the datasets every condition has ({', '.join(common) or 'none'}).",
        "",
        *markdown_table(
            ["model", "persona", "pooled mean", "pooled datasets", "common-dataset mean"], rows
        ),
    ]


def _effect_section(effect: pl.DataFrame) -> list[str]:
    rows = [
        [
            r["model"],
            r["dataset"],
            str(r["personas"]),
            f"{r['answers']:,}",
            _fmt(r["kruskal_h"]),
            _p(r["kruskal_p"]),
            _fmt(r["epsilon_squared"], 3),
            _fmt(r["friedman_chi2"]),
            _p(r["friedman_p"]),
        ]
        for r in effect.iter_rows(named=True)
    ]
    return [
        "### Persona effect per dataset",
        "",
        "Do the personas differ from each other at all? Kruskal-Wallis across personas on "
        "answers (epsilon² its effect size), and Friedman across personas on per-question means "
        f"with questions as blocks. Dataset `{NO_EM}`: persona-only models without EM.",
        "",
        *markdown_table(
            ["model", "dataset", "personas", "answers", "Kruskal H", "p", "ε²", "Friedman χ²", "p"],
            rows,
        ),
    ]


def _reliability_section(reliability: pl.DataFrame, runs: pl.DataFrame) -> list[str]:
    lines = ["### Judge reliability (conditions judged more than once)", ""]
    if reliability.is_empty():
        return [*lines, "No condition was judged more than once.", ""]
    rows = [
        [
            r["model"],
            r["persona"],
            r["dataset"],
            r["metric"],
            str(r["runs"]),
            f"{r['answers']:,}",
            _fmt(r["exact_match"], 3),
            _fmt(r["mean_abs_diff"], 2),
            _fmt(r["krippendorff_alpha"], 3),
            _fmt(r["scored_mismatch"], 3),
            _fmt(r["misaligned_verdict_agreement"], 4),
        ]
        for r in reliability.iter_rows(named=True)
    ]
    header = [
        "model",
        "persona",
        "dataset",
        "score",
        "runs",
        "answers",
        "exact match",
        "mean abs diff",
        "Krippendorff α",
        "scored in some runs only",
        "misaligned agrees",
    ]
    return [
        *lines,
        "Answers scored by two or more runs; exact match and mean absolute difference over run "
        "pairs; alpha with the interval metric. `scored in some runs only`: a number in one run, "
        "CODE / REFUSAL / no score in another.",
        "",
        *markdown_table(header, rows),
    ]


def write_tsv(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path, suffix=".tsv") as tmp:
        df.write_csv(tmp, separator="\t", float_precision=6)
