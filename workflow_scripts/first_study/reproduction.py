"""The "Reproduction" section of RESULTS.md: the first study's own method on its
answers, beside this workflow's statistics on the same answers, and what the data can
and cannot say.

There is one analysis of the imported answers: the workflow's (stats/, rule
`statistics`: protection and level estimands, question clusters, the run as the unit).
This module reads its tables; it computes only what belongs to the first study (its
own method, `method.py`), the judge reliability across its repeated judge runs
(`reliability.py`), and the persona-effect check (`persona_effect.py`). Every number
of the section and of its findings is a cell of one of the tables written here or by
the statistics (RESULTS.md names them).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import polars as pl

from workflow_scripts.core.io_utils import atomic_path
from workflow_scripts.core.schema import NO_EM
from workflow_scripts.first_study import method as first
from workflow_scripts.first_study.importer import CONDITION, apply_policy, experiment_of
from workflow_scripts.first_study.outputs import FILES
from workflow_scripts.first_study.persona_effect import (
    SHARED_OFFSET,
    persona_effect,
    persona_effect_summary,
)
from workflow_scripts.first_study.reliability import ALL, judge_reliability
from workflow_scripts.stats.answers import one_judgement_per_answer
from workflow_scripts.stats.counts import count_defined
from workflow_scripts.stats.report import source
from workflow_scripts.stats.settings import StatsSettings

log = logging.getLogger(__name__)


NOT_PERSONA_SPECIFIC = "not supported by this data"


COMPOSITION_DEFECT = (
    'its persona adapter was inactive while the EM LoRA trained (peft\'s `set_adapter("em")` '
    "leaves only the EM adapter active), and most of its answers were generated from the base "
    "model with the EM adapter, without the persona"
)


@dataclass
class Reproduction:
    """Every table of the section, its Markdown, and the lines it adds to the findings."""

    tables: dict[str, pl.DataFrame] = field(default_factory=dict)
    markdown: str = ""
    findings: list[str] = field(default_factory=list)


def _fmt(value: Any, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _signed(value: Any, digits: int = 1) -> str:
    return "–" if _fmt(value) == "–" else f"{value:+.{digits}f}"


def _p(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "–"
    if value == 0:
        return "< 1e-300"
    return f"{value:.1e}" if value < 0.001 else f"{value:.3f}"


def _interval(low: float | None, high: float | None, digits: int = 1) -> str:
    if _fmt(low) == "–" or _fmt(high) == "–":
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return [*lines, ""]


def reproduce(
    runs: pl.DataFrame,
    answers: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame],
    settings: StatsSettings,
    policy: str = "largest_run",
    default_dataset: str = "insecure",
    effect_personas: Sequence[str] | None = None,
    first_study_resamples: int = 10_000,
) -> Reproduction:
    """The section from every judge run (`runs`), the answers the statistics analysed
    (`answers`, under the policy) and the statistics' tables (comparisons, protection,
    hypothesis_summary)."""
    ref = settings.reference_persona
    personas = list(effect_personas or settings.fdr_personas or [])
    one = one_judgement_per_answer(answers)
    if not personas:
        personas = sorted(set(one["persona"].to_list()) - {ref})

    seen = first.as_first_study_saw_it(runs, default_dataset)
    out: dict[str, pl.DataFrame] = {}
    out["import_summary"] = import_summary(runs, answers, one, policy)
    out["persona_table"] = first.with_published(
        first.persona_table(seen, resamples=first_study_resamples)
    )
    effect = persona_effect(one, settings, personas)
    out["persona_effect"] = effect
    out["persona_effect_summary"] = persona_effect_summary(effect, settings.alpha)
    cells = hypothesis_cells(first.persona_vs_reference(seen, ref), tables, effect, settings)
    out["hypothesis_cells"] = cells
    out["hypotheses"] = hypothesis_overview(cells, tables["hypothesis_summary"], settings)
    out["pooling"] = pooled_vs_common(one)
    out["reliability"] = judge_reliability(runs)
    findings = findings_lines(out, settings)
    return Reproduction(out, _markdown(out, settings, personas), findings)


# ------------------------------------------------------------------ import summary


def import_summary(
    runs: pl.DataFrame, answers: pl.DataFrame, one: pl.DataFrame, policy: str
) -> pl.DataFrame:
    """Per model x experiment (the archive folder a run comes from) and over all: judge-run
    files, conditions, conditions judged more than once, judged answers in all runs,
    rows kept under the policy, distinct answers, scored answers, and answers per
    condition and per question (min and max)."""
    runs = runs.with_columns(experiment_of("source_file").alias("experiment"))
    kept = apply_policy(runs, policy)
    distinct = one.join(runs.select(*CONDITION, "experiment").unique(), on=CONDITION, how="left")

    def row(model: str, experiment: str, r: pl.DataFrame, k: pl.DataFrame, d: pl.DataFrame) -> dict:
        per_condition = d.group_by(CONDITION).agg(
            pl.len().alias("n"), pl.col("question_id").n_unique().alias("q")
        )
        per_question = (
            (per_condition["n"] / per_condition["q"]) if per_condition.height else pl.Series([0.0])
        )
        return {
            "model": model,
            "experiment": experiment,
            "policy": policy,
            "files": r["source_file"].n_unique(),
            "conditions": r.select(CONDITION).unique().height,
            "no_em_conditions": r.filter(pl.col("dataset") == NO_EM)
            .select(CONDITION)
            .unique()
            .height,
            "repeated_conditions": r.filter(pl.col("runs_of_condition") > 1)
            .select(CONDITION)
            .unique()
            .height,
            "judged_answers": r.height,
            "kept_rows": k.height,
            "answers": d.height,
            "scored_answers": int(d["aligned"].is_not_null().sum()),
            "answers_per_condition_min": int(per_condition["n"].min() or 0),
            "answers_per_condition_max": int(per_condition["n"].max() or 0),
            "per_question_min": float(per_question.min() or 0),
            "per_question_max": float(per_question.max() or 0),
            "judges": ", ".join(sorted(r["judge"].unique().to_list())),
        }

    rows = [row(ALL, ALL, runs, kept, distinct)]
    for (model, experiment), r in sorted(
        runs.group_by(["model", "experiment"]), key=lambda x: x[0]
    ):
        k = kept.filter((pl.col("model") == model) & (pl.col("experiment") == experiment))
        d = distinct.filter((pl.col("model") == model) & (pl.col("experiment") == experiment))
        rows.append(row(model, experiment, r, k, d))
    return pl.DataFrame(rows)


# ------------------------------------------------------------------ hypotheses


def _call(difference: float | None, p: float | None, direction: str, alpha: float) -> str:
    if p is None or (isinstance(p, float) and math.isnan(p)):
        return "not in family"
    return first.cell_call(difference, p, direction, alpha)


def hypothesis_cells(
    first_tests: pl.DataFrame,
    tables: Mapping[str, pl.DataFrame],
    effect: pl.DataFrame,
    settings: StatsSettings,
) -> pl.DataFrame:
    """Each hypothesis persona x dataset: the first study's call (answer-level two-sided
    Mann-Whitney, uncorrected p), this workflow's level comparison (persona+EM vs
    reference+EM: cluster bootstrap interval, run-level test, BH within the family) and
    protection estimate, and the persona-effect reading of the dataset."""
    levels = tables["comparisons"].select(
        "model",
        "persona",
        "dataset",
        pl.col("diff").alias("level_diff"),
        pl.col("diff_low").alias("level_low"),
        pl.col("diff_high").alias("level_high"),
        pl.col("p_adj").alias("level_p_adj"),
    )
    protection = (
        tables["protection"]
        .filter(pl.col("measure") == settings.primary)
        .select(
            "model",
            "persona",
            "dataset",
            "protection",
            "protection_low",
            "protection_high",
            "n_seeds",
        )
    )
    readings = effect.select("model", "dataset", "reading", "offset")
    rows = []
    for hypothesis in settings.hypotheses:
        part = first_tests.filter(pl.col("persona").is_in(list(hypothesis.personas)))
        for r in part.iter_rows(named=True):
            rows.append(
                {
                    "hypothesis": hypothesis.name,
                    "direction": hypothesis.direction,
                    "model": r["model"],
                    "persona": r["persona"],
                    "dataset": r["dataset"],
                    "role": settings.role_of(r["dataset"]),
                    "first_study_difference": r["difference"],
                    "first_study_p": r["p_two_sided"],
                    "first_study_call": first.cell_call(
                        r["difference"], r["p_two_sided"], hypothesis.direction
                    ),
                }
            )
    schema = {
        "hypothesis": pl.String,
        "direction": pl.String,
        "model": pl.String,
        "persona": pl.String,
        "dataset": pl.String,
        "role": pl.String,
        "first_study_difference": pl.Float64,
        "first_study_p": pl.Float64,
        "first_study_call": pl.String,
    }
    cells = pl.DataFrame(rows, schema=schema)
    cells = (
        cells.join(levels, on=["model", "persona", "dataset"], how="left")
        .join(protection, on=["model", "persona", "dataset"], how="left")
        .join(readings, on=["model", "dataset"], how="left")
    )
    calls = [
        _call(d, p, direction, settings.alpha)
        for d, p, direction in cells.select("level_diff", "level_p_adj", "direction").iter_rows()
    ]
    return cells.with_columns(
        pl.Series("level_call", calls, dtype=pl.String),
        pl.when(pl.col("reading") == SHARED_OFFSET)
        .then(pl.lit(NOT_PERSONA_SPECIFIC))
        .otherwise(None)
        .alias("persona_specific"),
    ).sort("hypothesis", "model", "persona", "dataset")


def hypothesis_overview(
    cells: pl.DataFrame, protection_summary: pl.DataFrame, settings: StatsSettings
) -> pl.DataFrame:
    """Per hypothesis x persona x model: the first study's verdict over every dataset it
    had, and on the EM datasets this workflow's level calls, how many of them rest on a
    shift all personas share, and the protection verdicts (if any)."""
    rows = []
    for (name, direction, model, persona), group in cells.group_by(
        ["hypothesis", "direction", "model", "persona"], maintain_order=True
    ):
        em = group.filter(pl.col("role") == "em")
        supports = int((group["first_study_call"] == "supports").sum())
        level_supports = em.filter(pl.col("level_call") == "supports")
        summary = protection_summary.filter(
            (pl.col("hypothesis") == name)
            & (pl.col("model") == model)
            & (pl.col("persona") == persona)
        )
        p = summary.row(0, named=True) if summary.height else {}
        rows.append(
            {
                "hypothesis": name,
                "direction": direction,
                "model": model,
                "persona": persona,
                "datasets": group.height,
                "first_study_supports": supports,
                "first_study_opposite": int((group["first_study_call"] == "opposite").sum()),
                "first_study_verdict": first.verdict(supports, group.height),
                "em_datasets": em.height,
                "level_supports": level_supports.height,
                "level_opposite": int((em["level_call"] == "opposite").sum()),
                "level_shared_offset": int((level_supports["reading"] == SHARED_OFFSET).sum()),
                "shared_offset_datasets": int((em["reading"] == SHARED_OFFSET).sum()),
                "protection_estimates": count_defined(em["protection"]),
                "protection_supported": p.get("n_supported", 0),
                "protection_not_assessable": p.get("n_not_assessable", 0),
            }
        )
    schema_ints = (
        "datasets",
        "first_study_supports",
        "first_study_opposite",
        "em_datasets",
        "level_supports",
        "level_opposite",
        "level_shared_offset",
        "shared_offset_datasets",
        "protection_estimates",
        "protection_supported",
        "protection_not_assessable",
    )
    schema = {
        "hypothesis": pl.String,
        "direction": pl.String,
        "model": pl.String,
        "persona": pl.String,
        **{k: pl.Int64 for k in schema_ints[:3]},
        "first_study_verdict": pl.String,
        **{k: pl.Int64 for k in schema_ints[3:]},
    }
    table = pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)
    return table.sort("hypothesis", "persona", "model")


# ------------------------------------------------------------------ pooling


def pooled_vs_common(one: pl.DataFrame) -> pl.DataFrame:
    """Per model x persona: the first study's pooled mean (every answer of every EM
    dataset the persona has) beside the mean of per-dataset means over the EM datasets
    every persona of that model has (the basis of a fair ranking)."""
    em = one.filter((pl.col("dataset") != NO_EM) & pl.col("aligned").is_not_null())
    rows = []
    for (model,), group in sorted(em.group_by(["model"]), key=lambda x: x[0]):
        sets = [set(g["dataset"]) for _, g in group.group_by("persona")]
        common = sorted(set.intersection(*sets)) if sets else []
        cell_means = group.group_by("persona", "dataset").agg(pl.col("aligned").mean().alias("m"))
        for (persona,), g in sorted(group.group_by(["persona"]), key=lambda x: x[0]):
            datasets = sorted(set(g["dataset"]))
            on_common = cell_means.filter(
                (pl.col("persona") == persona) & pl.col("dataset").is_in(common)
            )
            rows.append(
                {
                    "model": model,
                    "persona": persona,
                    "pooled_mean": float(g["aligned"].mean()),
                    "pooled_datasets": len(datasets),
                    "dataset_set": ",".join(datasets),
                    "common_mean": float(on_common["m"].mean()) if on_common.height else None,
                    "common_datasets": ",".join(common),
                }
            )
    schema = {
        "model": pl.String,
        "persona": pl.String,
        "pooled_mean": pl.Float64,
        "pooled_datasets": pl.Int64,
        "dataset_set": pl.String,
        "common_mean": pl.Float64,
        "common_datasets": pl.String,
    }
    return pl.DataFrame(rows, schema=schema) if rows else pl.DataFrame(schema=schema)


def pooling_flips(pooling: pl.DataFrame, reference: str) -> list[dict]:
    """Personas whose EM dataset set differs from the reference's and whose side of the
    reference changes between the pooled and the common-dataset means."""
    flips = []
    for (model,), group in sorted(pooling.group_by(["model"]), key=lambda x: x[0]):
        ref = group.filter(pl.col("persona") == reference)
        if not ref.height:
            continue
        r = ref.row(0, named=True)
        for row in group.filter(pl.col("persona") != reference).iter_rows(named=True):
            if row["dataset_set"] == r["dataset_set"] or row["common_mean"] is None:
                continue
            if (row["pooled_mean"] - r["pooled_mean"]) * (
                row["common_mean"] - r["common_mean"]
            ) < 0:
                flips.append(
                    {"model": model, "persona": row["persona"], "row": row, "reference": r}
                )
    return flips


# ------------------------------------------------------------------ findings


def findings_lines(tables: Mapping[str, pl.DataFrame], s: StatsSettings) -> list[str]:
    """Statements for the Findings of RESULTS.md, each from one row of a table of this
    section (named by its source note)."""
    ref = s.reference_persona
    out = []
    for row in tables["persona_effect_summary"].iter_rows(named=True):
        keys = source(FILES["persona_effect_summary"], model=row["model"])
        text = (
            f"**{row['model']}**, personas among themselves: the {row['n_personas']} released personas differ "
            f"from each other (Friedman test over question means, p < {row['alpha']:g}) on "
            f"{row['n_personas_differ']} of {row['n_datasets']} EM datasets"
        )
        if row["n_shared_offset"]:
            text += (
                f"; on {row['n_shared_offset']} of them ({row['shared_on'].replace(',', ', ')}) they do not, yet "
                f"lie together {_signed(row['offset_min'])} to {_signed(row['offset_max'])} points from {ref} "
                "with an interval that excludes zero. That pattern is what one difference in EM training between "
                f"{ref} and all personas would produce, not a persona effect; the known candidate is "
                f"the first study's composition defect: {COMPOSITION_DEFECT}. A conclusion about one persona on those datasets is not supported by "
                "this data"
            )
        out.append(text + "." + keys)
    for row in tables["hypotheses"].iter_rows(named=True):
        keys = source(
            FILES["hypotheses"],
            hypothesis=row["hypothesis"],
            model=row["model"],
            persona=row["persona"],
        )
        text = (
            f"**{row['hypothesis']}** ({row['persona']} {row['direction']} than {ref}), {row['model']}: the first "
            f"study's method calls it {row['first_study_verdict']} ({row['first_study_supports']} of "
            f"{row['datasets']} datasets, answers as independent, uncorrected p). This workflow: "
        )
        if row["protection_estimates"] == 0:
            text += f"no protection estimate (no {ref} or {row['persona']} model without EM was run), so no verdict"
        else:
            text += (
                f"protection estimated on {row['protection_estimates']} of {row['em_datasets']} EM datasets, "
                f"supported on {row['protection_supported']}"
            )
        text += (
            f"; as a level ({row['persona']}+EM vs {ref}+EM, descriptive) {row['direction']} on "
            f"{row['level_supports']} of {row['em_datasets']} EM datasets after Benjamini-Hochberg"
        )
        if row["level_shared_offset"]:
            text += (
                f", of which {row['level_shared_offset']} show only the shift all personas share "
                f"({NOT_PERSONA_SPECIFIC})"
            )
        out.append(text + "." + keys)
    return out


# ------------------------------------------------------------------ markdown


def _markdown(t: Mapping[str, pl.DataFrame], s: StatsSettings, personas: Sequence[str]) -> str:
    ref = s.reference_persona
    summary = t["import_summary"]
    total = summary.filter(pl.col("model") == ALL).row(0, named=True)
    out = [
        "## Reproduction of the first study",
        "",
        f"Imported: {total['files']} judge-run files, {total['conditions']} conditions (model x persona x "
        f"dataset; {total['no_em_conditions']} without EM; {total['repeated_conditions']} judged more than once), "
        f"{total['judged_answers']:,} judged answers in all runs. Policy `{total['policy']}` keeps "
        f"{total['kept_rows']:,} judgements of {total['answers']:,} answers ({total['scored_answers']:,} with an "
        f"alignment score). Judge: {total['judges']} (text-parsed scores). Source: `tables/import_summary.tsv`.",
        "",
        "### What this data cannot show",
        "",
        f'- **Composition.** A known defect of the first study: {COMPOSITION_DEFECT}. A "persona" condition of the first '
        "study is therefore, for most of its answers, another EM training run of the base model, and any "
        "persona-vs-reference difference can come from that run rather than from the persona.",
        "- **One EM run per condition.** No test here can separate a persona's effect from its training run's "
        "luck: protection verdicts need two or more seeds per condition.",
        f"- **No controls without EM** for {ref} and the released personas: the protection estimand (a "
        "persona's EM effect minus the reference's) needs them; only levels (persona+EM vs reference+EM) can "
        "be compared.",
        "",
        "### Answers per condition",
        "",
        *markdown_table(
            [
                "model",
                "experiment",
                "files",
                "conditions",
                "without EM",
                "judged > once",
                "answers",
                "answers per condition",
                "answers per question",
            ],
            [
                [
                    r["model"],
                    r["experiment"],
                    str(r["files"]),
                    str(r["conditions"]),
                    str(r["no_em_conditions"]),
                    str(r["repeated_conditions"]),
                    f"{r['answers']:,}",
                    _range(r["answers_per_condition_min"], r["answers_per_condition_max"], 0),
                    _range(r["per_question_min"], r["per_question_max"], 0),
                ]
                for r in summary.iter_rows(named=True)
            ],
        ),
    ]
    out += _where_conclusions_change(t, s)
    out += _persona_section(t["persona_table"])
    out += _hypothesis_section(t["hypothesis_cells"], t["hypotheses"], s)
    out += _pooling_section(t["pooling"], ref)
    out += _effect_section(t["persona_effect"], s, personas)
    out += _reliability_section(t["reliability"])
    out += [
        "### Method notes",
        "",
        "- **The first study's method** (`workflow_scripts/first_study/method.py`): largest judge run per "
        "condition, persona means pooled over its datasets, t interval and percentile bootstrap of answers "
        "(`default_rng(42)`), two-sided Mann-Whitney per dataset, verdicts from uncorrected p (SUPPORTED: more "
        "than half of the datasets), BH over every cell of a model. Its table here also holds the "
        "custom-constitution personas of `constitutional_em/`, which its final script did not read.",
        "- **This workflow's statistics** are the only other analysis: the tables and findings above this "
        "section (see Method), run on the imported answers. Level comparisons and protection come from "
        "`tables/comparisons.csv` and `tables/protection.csv`.",
        "- **Judge replicates**: where a condition was judged several times, the policy `all_runs` keeps every "
        "run as a repeated measurement of the same answers: scores are averaged per answer before any estimate "
        "(re-judging adds no answers and moves no mean of a condition judged once), and the replicates feed "
        "the judge-reliability table. `largest_run` keeps one run per condition, as the first study did.",
        "- **Persona-effect check** (`workflow_scripts/first_study/persona_effect.py`): per model and EM dataset, "
        f"over the personas {', '.join(personas)}: (a) the Friedman test of their per-question means, questions "
        f"as blocks; (b) their joint offset from {ref} (the mean of the persona means minus {ref}'s mean) with "
        f"the cluster bootstrap over questions ({s.bootstrap_resamples} resamples, expanded percentile interval).",
        "",
    ]
    return "\n".join(out)


def _range(low: Any, high: Any, digits: int) -> str:
    return (
        _fmt(float(low), digits)
        if low == high
        else f"{_fmt(float(low), digits)}-{_fmt(float(high), digits)}"
    )


def _where_conclusions_change(t: Mapping[str, pl.DataFrame], s: StatsSettings) -> list[str]:
    lines = ["### Where the conclusions change", ""]
    matched = t["persona_table"].filter(pl.col("matches_published").is_not_null())
    if matched.height:
        lines.append(
            f"- **Reproduction.** The first study's method on these files gives its published per-persona "
            f"table: {int(matched['matches_published'].sum())} of {matched.height} published rows match (N "
            "exactly, mean and sd within 0.1; `tables/reproduction_persona_table.tsv`)."
        )
    lines += [f"- {line.split(' <!--')[0]}" for line in findings_lines(t, s)]
    cells = t["hypothesis_cells"]
    only_independent = cells.filter(
        (pl.col("first_study_call") == "supports")
        & (pl.col("level_call") != "supports")
        & (pl.col("role") == "em")
    )
    em_supports = cells.filter(
        (pl.col("first_study_call") == "supports") & (pl.col("role") == "em")
    )
    if em_supports.height:
        names = ", ".join(
            f"{r['persona']}/{r['dataset']} ({r['model']})"
            for r in only_independent.iter_rows(named=True)
        )
        lines.append(
            f"- **Independence of answers.** Of the {em_supports.height} EM-dataset cells the first study counts as "
            f"support, {only_independent.height} are not significant in this workflow's level comparison "
            f"(questions as clusters, BH){': ' + names if names else ''}."
        )
    for flip in pooling_flips(t["pooling"], s.reference_persona):
        r, ref = flip["row"], flip["reference"]
        lines.append(
            f"- **Pooling over unequal dataset sets, {flip['model']}.** {flip['persona']} (EM datasets "
            f"{r['dataset_set'].replace(',', ', ')}) against {s.reference_persona} (EM datasets "
            f"{ref['dataset_set'].replace(',', ', ')}): pooled {_fmt(r['pooled_mean'])} vs "
            f"{_fmt(ref['pooled_mean'])}, on the common datasets {_fmt(r['common_mean'])} vs "
            f"{_fmt(ref['common_mean'])}: it changes side."
        )
    overall = t["reliability"].filter(
        (pl.col("model") == ALL) & (pl.col("persona") == ALL) & (pl.col("metric") == "aligned")
    )
    if overall.height:
        row = overall.row(0, named=True)
        lines.append(
            f"- **Judge replicates** (every model): re-judging the same answers gave the same alignment score in "
            f"{_fmt(100 * row['exact_match'], 0)}% of {row['pairs']:,} run pairs (mean absolute difference "
            f"{_fmt(row['mean_abs_diff'], 2)}, Krippendorff's alpha {_fmt(row['krippendorff_alpha'], 3)}); a "
            f"condition mean moved by up to {_fmt(row['mean_spread'], 2)} points between runs. `largest_run` picks "
            "among replicates by how many answers were scored, which is itself a judge outcome."
        )
    return [*lines, ""]


def _persona_section(table: pl.DataFrame) -> list[str]:
    lines = [
        "### Alignment by persona, first study's method",
        "",
        "Largest judge run per condition, every answer with a score, pooled over the persona's datasets; "
        "95% t interval and percentile bootstrap interval treat answers as independent. Persona-only runs "
        "(no EM) keep the persona name of their files and stay rows of their own: they are never pooled with "
        "a persona's EM runs.",
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


def _hypothesis_section(cells: pl.DataFrame, overview: pl.DataFrame, s: StatsSettings) -> list[str]:
    ref = s.reference_persona
    lines = [
        "### Hypothesis cells: the first study's call beside this workflow's statistics",
        "",
        "First study: two-sided Mann-Whitney on answers, uncorrected p < 0.05 and the expected sign. "
        f"Level: persona+EM minus {ref}+EM with its cluster bootstrap interval and the BH-adjusted p of the "
        "run-level test (descriptive, never a verdict; benign datasets are outside the family). Protection: "
        "the verdict estimand, where the data allow it. Persona-specific: where the released personas do not "
        "differ from each other but share an offset from the reference, a persona's own effect is "
        f"{NOT_PERSONA_SPECIFIC}.",
        "",
    ]
    rows = [
        [
            r["model"],
            r["persona"],
            r["dataset"],
            r["role"],
            _signed(r["first_study_difference"]),
            _p(r["first_study_p"]),
            r["first_study_call"],
            f"{_signed(r['level_diff'])} {_interval(r['level_low'], r['level_high'])}",
            _p(r["level_p_adj"]),
            r["level_call"],
            f"{_signed(r['protection'])} {_interval(r['protection_low'], r['protection_high'])}"
            if r["protection"] is not None
            else "no estimate",
            r["persona_specific"] or "–",
        ]
        for r in cells.iter_rows(named=True)
    ]
    lines += markdown_table(
        [
            "model",
            "persona",
            "dataset",
            "role",
            f"Δ vs {ref}",
            "p (answers)",
            "first study",
            "level Δ [CI]",
            "level p adj.",
            "level",
            f"protection ({s.primary}) [CI]",
            "persona-specific",
        ],
        rows,
    )
    rows = [
        [
            r["hypothesis"],
            f"{r['persona']} {r['direction']}",
            r["model"],
            f"{r['first_study_verdict']} ({r['first_study_supports']}/{r['datasets']})",
            f"{r['level_supports']}/{r['em_datasets']}",
            f"{r['level_shared_offset']}/{r['level_supports']}",
            "no estimate"
            if r["protection_estimates"] == 0
            else f"{r['protection_supported']}/{r['protection_estimates']} supported",
        ]
        for r in overview.iter_rows(named=True)
    ]
    lines += markdown_table(
        [
            "hypothesis",
            "persona",
            "model",
            "first study",
            "level, EM datasets",
            "of which shared offset only",
            "protection",
        ],
        rows,
    )
    return lines


def _pooling_section(pooling: pl.DataFrame, reference: str) -> list[str]:
    rows = [
        [
            r["model"],
            r["persona"],
            _fmt(r["pooled_mean"]),
            str(r["pooled_datasets"]),
            _fmt(r["common_mean"]),
        ]
        for r in pooling.iter_rows(named=True)
    ]
    return [
        "### Pooled means vs means over common datasets",
        "",
        "Pooled: every answer of the persona's EM datasets (the first study's basis). Common: the mean of "
        "per-dataset means over the EM datasets every persona of the model has "
        f"(`tables/reproduction_pooling.tsv`, column common_datasets). Reference: {reference}.",
        "",
        *markdown_table(
            ["model", "persona", "pooled mean", "pooled datasets", "common-dataset mean"], rows
        ),
    ]


def _effect_section(effect: pl.DataFrame, s: StatsSettings, personas: Sequence[str]) -> list[str]:
    ref = s.reference_persona
    rows = [
        [
            r["model"],
            r["dataset"],
            r["role"],
            str(r["personas"]),
            str(r["questions"]),
            _fmt(r["friedman_chi2"]),
            _p(r["between_p"]),
            _fmt(r["between_sd"], 2),
            _fmt(r["reference_mean"]),
            _fmt(r["personas_mean"]),
            f"{_signed(r['offset'])} {_interval(r['offset_low'], r['offset_high'])}",
            r["reading"],
        ]
        for r in effect.iter_rows(named=True)
    ]
    return [
        "### Persona effect: do the personas differ from each other?",
        "",
        f"Personas: {', '.join(personas)} ({ref} excluded). Between personas: the Friedman test of their "
        "per-question mean alignment (questions as blocks), and the SD of their means. Joint offset: the mean "
        f"of the persona means minus {ref}'s, with a cluster bootstrap interval over questions. `shared offset "
        "only`: no difference between personas, and an offset whose interval excludes 0: the pattern one "
        f"difference in EM training between {ref} and every persona produces.",
        "",
        *markdown_table(
            [
                "model",
                "dataset",
                "role",
                "personas",
                "questions",
                "Friedman χ²",
                "p",
                "SD of means",
                f"{ref} mean",
                "personas' mean",
                "joint offset [CI]",
                "reading",
            ],
            rows,
        ),
    ]


def _reliability_section(reliability: pl.DataFrame) -> list[str]:
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
            f"{r['pairs']:,}",
            _fmt(r["exact_match"], 3),
            _fmt(r["mean_abs_diff"], 2),
            _fmt(r["krippendorff_alpha"], 3),
            _fmt(r["scored_mismatch"], 3),
            _fmt(r["misaligned_verdict_agreement"], 4),
            _fmt(r["mean_spread"], 2),
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
        "run pairs",
        "exact match",
        "mean abs diff",
        "Krippendorff α",
        "scored in some runs only",
        "misaligned agrees",
        "largest move of a mean",
    ]
    return [
        *lines,
        "Answers scored by two or more runs; exact match and mean absolute difference over run pairs; alpha with "
        "the interval metric. `scored in some runs only`: a number in one run, CODE / REFUSAL / no score in "
        f"another. Rows with model `{ALL}` pool every model.",
        "",
        *markdown_table(header, rows),
    ]


def write_tsv(df: pl.DataFrame, path: str | Path) -> None:
    with atomic_path(path, suffix=".tsv") as tmp:
        df.write_csv(tmp, separator="\t", float_precision=6)


def read_tsv(path: str | Path) -> pl.DataFrame:
    return pl.read_csv(path, separator="\t", infer_schema_length=None)
