"""results/final/RESULTS.md (rule `results_report`): the tables, findings written from
the numbers (never by hand), the method, what is missing, and the figures; plus an
optional extra Markdown section (the first study's reproduction) when given."""

import logging
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import polars as pl

from workflow_scripts.core.schema import NO_EM
from workflow_scripts.stats.design import design_sentence
from workflow_scripts.stats.outputs import CAPTIONS, TABLES
from workflow_scripts.stats.protection import MEASURE_LABELS, MEASURE_UNITS
from workflow_scripts.stats.settings import StatsSettings
from workflow_scripts.stats.tables import OUTSIDE_DESIGN, read_table

log = logging.getLogger(__name__)


Column = tuple[str, Callable[[dict], str]]


def num(value, digits: int = 1) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}"


def signed(value, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.{digits}f}"


def interval(low, high, digits: int = 1) -> str:
    if any(v is None or (isinstance(v, float) and math.isnan(v)) for v in (low, high)):
        return "–"
    return f"[{low:.{digits}f}, {high:.{digits}f}]"


def pvalue(value) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return "< 0.0001" if value < 1e-4 else f"{value:.4f}"


def with_ci(row: dict, name: str, low: str, high: str, digits: int = 1, sign: bool = False) -> str:
    value = signed(row[name], digits) if sign else num(row[name], digits)
    if value == "–":
        return value
    return f"{value} {interval(row[low], row[high], digits)}"


def markdown_table(rows: Sequence[dict], columns: Sequence[Column]) -> str:
    if not rows:
        return "_(no rows)_\n"
    lines = ["| " + " | ".join(h for h, _ in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    lines += ["| " + " | ".join(f(r) for _, f in columns) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _rows(table: pl.DataFrame) -> list[dict]:
    return table.to_dicts()


def _models(tables: dict[str, pl.DataFrame]) -> list[str]:
    return list(dict.fromkeys(tables["conditions"]["model"].to_list()))


def _dataset_name(name: str) -> str:
    return "no EM (control)" if name == NO_EM else name


def source(table: str, **keys) -> str:
    """An invisible note naming the table row a finding's numbers come from."""
    return f" <!-- source: {table} | " + "; ".join(f"{k}={v}" for k, v in keys.items()) + " -->"


def _unit(measure: str) -> str:
    return MEASURE_UNITS[measure]


def protection_finding(row: dict, s: StatsSettings) -> str:
    """One hypothesis row: the protection estimate, its seeds, interval and adjusted p,
    the verdict, then the level comparison as context."""
    measure = row["measure"]
    check = f" (persona check: {row['persona_check']})" if row["persona_check"] else ""
    return (
        f"{row['dataset']}: protection on the {MEASURE_LABELS[measure]} = {signed(row['protection'])} "
        f"{_unit(measure)} {interval(row['protection_low'], row['protection_high'])} (difference in differences, "
        f"{row['n_seeds']} seed(s) per EM condition), adjusted p {pvalue(row['p_adj'])}: **{row['verdict']}**{check}. "
        f"Level, for context ({row['persona']}+EM vs {s.reference_persona}+EM, mean alignment): "
        f"{with_ci(row, 'level_diff', 'level_low', 'level_high', sign=True)}, adjusted p {pvalue(row['level_p_adj'])}."
        + source("hypotheses", hypothesis=row["hypothesis"], model=row["model"], persona=row["persona"],
                 dataset=row["dataset"])
    )


def no_protection_findings(tables: dict[str, pl.DataFrame], s: StatsSettings) -> list[str]:
    """Per model whose hypotheses have no protection estimate: why (which no-EM
    controls the data lack), in words."""
    if not s.hypotheses:
        return []
    out = []
    conditions = tables["conditions"]
    for model in _models(tables):
        if tables["hypotheses"].filter(pl.col("model") == model).height:
            continue
        controls = set(conditions.filter((pl.col("model") == model) & (pl.col("dataset") == NO_EM))["persona"])
        personas = [p for p in dict.fromkeys(s.hypothesis_personas()) if p not in controls]
        lacking = ([s.reference_persona] if s.reference_persona not in controls else []) + personas
        design = tables["design"].filter((pl.col("model") == model) & (pl.col("measure") == s.primary))
        if not lacking or design.height == 0:
            continue
        out.append(
            f"**{model}**: no protection estimate, hence no verdict on any hypothesis: protection compares a "
            f"persona's EM effect with {s.reference_persona}'s and needs each model without EM, which these data "
            f"lack for {', '.join(lacking)}. Only levels (persona+EM vs {s.reference_persona}+EM) can be compared, "
            "and they are descriptive." + source("design", model=model, measure=s.primary)
        )
    return out


def findings(tables: dict[str, pl.DataFrame], s: StatsSettings) -> list[str]:
    """Plain-language statements, each computed from one table row (named by an
    invisible source note, so that every number can be checked against it)."""
    out: list[str] = []
    ref = s.reference_persona
    hypotheses = tables["hypotheses"]
    for row in _rows(tables["hypothesis_summary"]):
        text = (
            f"**{row['hypothesis']}** ({row['persona']} {row['direction']} than {ref}: EM fine-tuning "
            f"{'harms it less' if row['direction'] == 'higher' else 'harms it more'}), {row['model']}: protection "
            f"supported on {row['n_supported']} of {row['n_datasets']} EM datasets"
        )
        if row["n_supported"]:
            text += f" ({row['supported_on'].replace(',', ', ')})"
        if row["n_contrary"]:
            text += f"; the opposite direction on {row['n_contrary']} ({row['contrary_on'].replace(',', ', ')})"
        if row["n_not_assessable"]:
            text += f"; not assessable on {row['n_not_assessable']}"
            if row["n_seeds"] is not None and row["n_seeds"] < 2:
                text += (" (one EM run per condition: no test can tell the persona's effect from its run's "
                         "luck; the estimates below are descriptive)")
        if row["persona_check"]:
            text += f" (persona check: {row['persona_check']})"
        out.append(text + "." + source("hypothesis_summary", hypothesis=row["hypothesis"], model=row["model"],
                                       persona=row["persona"]))
        part = hypotheses.filter(
            (pl.col("hypothesis") == row["hypothesis"]) & (pl.col("model") == row["model"])
            & (pl.col("persona") == row["persona"])
        )
        out += [f"  - {protection_finding(r, s)}" for r in _rows(part)]
    out += no_protection_findings(tables, s)
    for model in _models(tables):
        ranked = tables["datasets"].filter((pl.col("model") == model) & (pl.col("rank") == 1))
        if ranked.height:
            hardest = ranked.row(0, named=True)
            out.append(
                f"**{model}**: the hardest EM dataset was {hardest['dataset']} (mean alignment over "
                f"{hardest['n_personas']} personas {with_ci(hardest, 'mean', 'boot_low', 'boot_high')}; "
                f"{ref}'s EM effect {with_ci(hardest, 'em_effect', 'em_effect_low', 'em_effect_high', sign=True)})."
                + source("datasets", model=model, dataset=hardest["dataset"])
            )
        benign = tables["em_effects"].filter(
            (pl.col("model") == model) & (pl.col("persona") == ref) & (pl.col("role") == "benign")
            & (pl.col("measure") == s.primary)
        )
        for row in _rows(benign):
            out.append(
                f"**{model}**, benign fine-tuning on {row['dataset']} moved {ref}'s {MEASURE_LABELS[row['measure']]} "
                f"by {with_ci(row, 'em_effect', 'em_effect_low', 'em_effect_high', sign=True)} "
                f"{_unit(row['measure'])} ({row['n_seeds']} seed(s)), adjusted p {pvalue(row['p_adj'])}."
                + source("em_effects", model=model, persona=ref, dataset=row["dataset"], measure=row["measure"])
            )
        design = tables["design"].filter((pl.col("model") == model) & (pl.col("measure") == s.primary))
        for row in _rows(design):
            out.append(f"**{model}**, design: {design_sentence(row)}." + source("design", model=model,
                                                                              measure=row["measure"]))
    return out


def data_section(tables: dict[str, pl.DataFrame], s: StatsSettings) -> str:
    conditions = tables["conditions"]
    judges = sorted({j for v in conditions["judge"].drop_nulls().to_list() for j in str(v).split(",")})
    lines = [
        "## Data",
        "",
        f"- Models: {', '.join(_models(tables))}",
        f"- Personas: {', '.join(dict.fromkeys(conditions['persona'].to_list()))} (reference: {s.reference_persona})",
        f"- Datasets: {', '.join(_dataset_name(d) for d in dict.fromkeys(conditions['dataset'].to_list()))}",
        f"- Conditions: {conditions.height}; answers: {int(conditions['n_answers'].sum())}, "
        f"with an alignment score used here: {int(conditions['n_scored'].sum())}",
        f"- Judge: {', '.join(judges) or 'unknown'}",
        "",
    ]
    return "\n".join(lines)


def missing_section(tables: dict[str, pl.DataFrame]) -> str:
    lines = ["## Missing", ""]
    everything = tables["missing_conditions"]
    outside = everything.filter(pl.col("status") == OUTSIDE_DESIGN)
    missing = everything.filter(pl.col("status") != OUTSIDE_DESIGN)
    design = "the imported study's own design" if outside.height else "the configured grid"
    if missing.height == 0:
        lines.append(f"Every condition of {design} has scored answers.")
    else:
        lines.append(f"{missing.height} condition(s) of {design} are missing from the analysis:\n")
        grouped = missing.group_by(["model", "persona", "status"], maintain_order=True).agg(pl.col("dataset"))
        lines.append(markdown_table(_rows(grouped), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]),
            ("Datasets", lambda r: ", ".join(_dataset_name(d) for d in r["dataset"])),
            ("Status", lambda r: r["status"]),
        ]))
    if outside.height:
        lines.append(
            f"\nThe configured grid has {outside.height} further condition(s) the imported study never planned "
            "(for example no-EM controls of every persona); they are not listed here (`tables/missing_conditions.csv`, "
            f"status \"{OUTSIDE_DESIGN}\")."
        )
    scores = tables["missing_scores"]
    if scores.height:
        summary = scores.group_by(["score", "reason"]).agg(pl.col("n").sum()).sort(["score", "n"], descending=[False, True])
        lines.append("\nMissing judge scores (left out of the statistics that need them):\n")
        lines.append(markdown_table(_rows(summary), [
            ("Score", lambda r: r["score"]), ("Reason", lambda r: r["reason"]), ("Answers", lambda r: str(r["n"])),
        ]))
    else:
        lines.append("\nNo judge score is missing.")
    return "\n".join(lines) + "\n"


def method_section(s: StatsSettings) -> str:
    tests = {
        "cluster_t": "a one-sample t test of the per-question mean differences (persona minus reference; "
        "the questions are shared, so they pair; Q - 1 degrees of freedom); with several seeds on both "
        "sides, Welch's t test of the run means",
        "cluster_wilcoxon": "Wilcoxon's signed-rank test of the per-question mean differences; with several "
        "seeds on both sides, the Mann-Whitney U test of the run means",
        "mann_whitney": "the answer-level Mann-Whitney U test (answers taken as independent, as in the first "
        "study; its p is too small when answers cluster by question)",
    }
    family_personas = ", ".join(s.fdr_personas) if s.fdr_personas else f"every persona but {s.reference_persona}"
    family_datasets = ", ".join(s.fdr_datasets) if s.fdr_datasets else "every dataset of role em"
    interval_name = {
        "expanded_percentile": "expanded percentile interval (Hesterberg 2015: the percentile interval widened "
        "for few resampled units, so that it matches a t interval on Q - 1 df)",
        "percentile": "percentile interval",
    }[s.bootstrap_interval]
    filter_text = (
        "none" if s.coherence_filter is None else f"answers with coherence <= {s.coherence_filter:g} are left out"
    )
    lines = [
        "## Method",
        "",
        "- **Unit of replication**: the training run (model, persona, dataset, seed); answers cluster by question. "
        "With one seed per condition the run-to-run variance cannot be estimated: intervals and tests then "
        "cover the variation over questions and answers of that one run.",
        f"- **Cluster bootstrap** ({s.bootstrap_resamples} resamples, seed {s.seed}): each resample draws the "
        "questions with replacement, the same draw for every condition and model (differences stay paired by "
        "question); a condition trained with several seeds first has its seeds drawn with replacement; the "
        "answers of a drawn question are kept as they are (resampling them as well counts the within-question "
        f"variance twice). Intervals: 95% {interval_name}.",
        "- **t interval**: the answer-level mean with a cluster-robust (CR1) standard error, clusters = questions "
        "(seeds where a condition has several), t on G - 1 degrees of freedom.",
        f"- **Tests** (`statistics.test: {s.test}`): {tests[s.test]}. Direction-matched: one-sided in a "
        "hypothesis's direction for its personas, two-sided otherwise. The answer-level Mann-Whitney U (same "
        "direction) and its common-language effect size are reported as well.",
        "- **Cohen's d**: difference of means over the pooled answer-level SD, with a cluster bootstrap interval.",
        f"- **Protection (the verdict estimand)**: per model, persona and dataset, the EM effect of the persona "
        f"(persona+EM minus the persona without EM) minus the EM effect of {s.reference_persona} (a difference in "
        "differences over four conditions), on (a) the misaligned share among coherent answers (misaligned / "
        f"answers with coherent > {s.coherent_above:g}, in points of %) and (b) mean alignment. A protective "
        "persona has a negative protection on the share and a positive one on mean alignment. Interval: the "
        "cluster bootstrap below, the four conditions paired by question. p: two-sided, t = estimate / bootstrap "
        "SE (scaled by u / (u - 1) for u resampled units), on the run-level degrees of freedom (sum of seeds - 1 "
        "over the two EM conditions) where seeds are replicated, else Q - 1.",
        f"- **Verdicts** use the primary estimand (`statistics.primary: {s.primary}`) and its Benjamini-Hochberg "
        f"adjusted p at alpha {s.alpha:g}, per model over the family {family_personas} x {family_datasets}: "
        "supported (adjusted p < alpha, in the hypothesis's direction), contrary (adjusted p < alpha, the other "
        "direction), not supported. A persona the persona check finds not expressed gets \"not assessable: "
        "persona not expressed\" and leaves the family; with one seed per EM condition the verdict is \"not "
        "assessable (1 seed)\""
        + (" (here overridden: `single_seed_verdicts: true`)" if s.single_seed_verdicts else "")
        + ": one run cannot separate a persona from its EM run's luck.",
        f"- **Dataset roles**: benign datasets ({', '.join(s.benign_datasets) or 'none'}) are aligned counterparts "
        "or KL sets: they are outside the FDR family and every \"N of M EM datasets\" count, and are reported as "
        "a control analysis (does benign fine-tuning move alignment?).",
        "- **Levels** (persona+EM vs reference+EM, what the first study reported) are descriptive: "
        "Benjamini-Hochberg per model over the same family, never a verdict. "
        + ("Bad vs good medical (per model) and each pair of models are separate families." if s.medical_pair
           else "Each pair of models is a separate family."),
        "- **Prompt variants**: "
        + ("every variant pooled, a question's variants one cluster." if s.pool_prompt_variants
           else f"only the `{s.prompt_variant}` variant is analysed; other variants are counted, never pooled."),
        "- **Alignment by persona** pools each persona's answers over the EM datasets that every persona of the "
        "model has; **cross-model** comparisons use only the EM datasets both models have for that persona.",
        f"- **Misaligned** (Betley et al.): aligned < {s.misaligned_below:g} and coherent > {s.coherent_above:g}, "
        f"over answers with both scores. Tail shares: % of answers with aligned below "
        f"{', '.join(f'{t:g}' for t in s.tail_thresholds)}; P{s.tail_quantile:g}: numpy's linear percentile.",
        f"- Coherence filter before alignment statistics: {filter_text}. No mixed model is used.",
        "- **Judge replicates**: an answer judged several times (an import with `all_runs`) is one answer "
        "measured repeatedly: its alignment and coherence are averaged over the runs that scored it before any "
        "statistic, so re-judging adds no answers, gives no condition more weight, and leaves the means of "
        "conditions judged once as they are. The replicates themselves serve the judge-reliability table.",
        "",
    ]
    return "\n".join(lines)


def tables_section(tables: dict[str, pl.DataFrame], s: StatsSettings) -> str:
    ref = s.reference_persona
    out: list[str] = []
    personas = tables["personas"]
    out.append("## Alignment by persona\n")
    for model in _models(tables):
        part = personas.filter(pl.col("model") == model)
        if part.height == 0:
            out.append(f"**{model}**: no EM dataset is shared by every persona.\n")
            continue
        out.append(f"**{model}** (EM datasets: {part['datasets'][0].replace(',', ', ')})\n")
        out.append(markdown_table(_rows(part), [
            ("Persona", lambda r: r["persona"]), ("N", lambda r: str(int(r["n_scored"]))),
            ("Mean", lambda r: num(r["mean"])), ("SD", lambda r: num(r["sd"])),
            ("95% t CI (cluster)", lambda r: interval(r["t_low"], r["t_high"])),
            ("95% bootstrap CI", lambda r: interval(r["boot_low"], r["boot_high"])),
            ("% misaligned", lambda r: with_ci(r, "pct_misaligned", "pct_misaligned_low", "pct_misaligned_high")),
        ]))
    controls = tables["conditions"].filter(pl.col("dataset") == NO_EM)
    if controls.height:
        out.append("## Controls without EM\n")
        out.append(markdown_table(_rows(controls), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]),
            ("N", lambda r: str(int(r["n_scored"]))), ("Mean", lambda r: num(r["mean"])),
            ("95% t CI", lambda r: interval(r["t_low"], r["t_high"])),
            ("95% bootstrap CI", lambda r: interval(r["boot_low"], r["boot_high"])),
            ("% misaligned", lambda r: with_ci(r, "pct_misaligned", "pct_misaligned_low", "pct_misaligned_high")),
        ]))
    out.append("## Mean alignment by persona and dataset\n")
    for model in _models(tables):
        part = tables["conditions"].filter(pl.col("model") == model)
        datasets = list(dict.fromkeys(part["dataset"].to_list()))
        grid = {(r["persona"], r["dataset"]): r["mean"] for r in _rows(part)}
        rows = [{"persona": p} for p in dict.fromkeys(part["persona"].to_list())]
        columns: list[Column] = [("Persona", lambda r: r["persona"])]
        columns += [(_dataset_name(d), lambda r, d=d, g=grid: num(g.get((r["persona"], d)))) for d in datasets]
        out.append(f"**{model}**\n")
        out.append(markdown_table(rows, columns))
    comparison_columns: list[Column] = [
        ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]), ("Dataset", lambda r: r["dataset"]),
        ("Persona mean", lambda r: num(r["mean_persona"])), (f"{ref} mean", lambda r: num(r["mean_reference"])),
        ("Δ [95% CI]", lambda r: with_ci(r, "diff", "diff_low", "diff_high", sign=True)),
        ("Cohen's d [95% CI]", lambda r: with_ci(r, "cohens_d", "d_low", "d_high", digits=2, sign=True)),
        ("p", lambda r: pvalue(r["p"])), ("p adj.", lambda r: pvalue(r["p_adj"])),
        ("MW p (answers)", lambda r: pvalue(r["p_mann_whitney"])),
    ]
    unit = MEASURE_UNITS[s.primary]
    protection_columns: list[Column] = [
        ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]), ("Dataset", lambda r: r["dataset"]),
        ("Seeds", lambda r: str(r["n_seeds"])),
        ("EM effect, persona", lambda r: with_ci(r, "em_effect", "em_effect_low", "em_effect_high", sign=True)),
        (f"EM effect, {ref}", lambda r: with_ci(r, "reference_effect", "reference_effect_low",
                                                "reference_effect_high", sign=True)),
        ("Protection [CI]", lambda r: with_ci(r, "protection", "protection_low", "protection_high", sign=True)),
        ("p", lambda r: pvalue(r["p"])), ("p adj.", lambda r: pvalue(r["p_adj"])),
        ("Persona check", lambda r: r["persona_check"] or "–"),
    ]
    hypotheses = tables["hypotheses"]
    if s.hypotheses:
        out.append(f"## Hypotheses (protection on the {MEASURE_LABELS[s.primary]}, {unit})\n")
        for hypothesis in s.hypotheses:
            part = hypotheses.filter(pl.col("hypothesis") == hypothesis.name)
            out.append(
                f"**{hypothesis.name}**: EM fine-tuning harms {', '.join(hypothesis.personas)} "
                f"{'less' if hypothesis.direction == 'higher' else 'more'} than {ref}\n"
            )
            out.append(markdown_table(_rows(part), [
                *protection_columns, ("Verdict", lambda r: r["verdict"]),
                ("Level Δ (context)", lambda r: with_ci(r, "level_diff", "level_low", "level_high", sign=True)),
            ]))
    protection = tables["protection"]
    for measure in (s.primary, *[m for m in MEASURE_LABELS if m != s.primary]):
        part = protection.filter((pl.col("measure") == measure) & (pl.col("role") == "em"))
        label = "primary" if measure == s.primary else "secondary"
        out.append(f"## Protection on the {MEASURE_LABELS[measure]} ({label}; {MEASURE_UNITS[measure]})\n")
        out.append(markdown_table(_rows(part), protection_columns))
    benign = tables["em_effects"].filter(pl.col("role") == "benign")
    out.append("## Benign fine-tuning (control analysis: does it move alignment?)\n")
    if benign.height == 0:
        out.append("_No dataset of role benign with a no-EM control._\n")
    else:
        out.append(markdown_table(_rows(benign), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]), ("Dataset", lambda r: r["dataset"]),
            ("Measure", lambda r: MEASURE_LABELS[r["measure"]]), ("Seeds", lambda r: str(r["n_seeds"])),
            ("Fine-tuned minus control", lambda r: with_ci(r, "em_effect", "em_effect_low", "em_effect_high",
                                                           sign=True)),
            ("p adj.", lambda r: pvalue(r["p_adj"])),
        ]))
    out.append("## Persona check\n")
    checks = tables["persona_check"]
    if checks.height == 0:
        out.append("_No persona check for this run (no persona with an adapter, or imported answers)._\n")
    else:
        out.append(markdown_table(_rows(checks), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]),
            ("KL from base", lambda r: num(r["kl_mean"], 4)), ("Trait Δ", lambda r: signed(r["trait_delta"])),
            ("Flag", lambda r: r["flag"]), ("Expressed", lambda r: "yes" if r["expressed"] else "**no**"),
        ]))
    out.append("## Seed-to-seed SD (conditions with several EM seeds)\n")
    spread = tables["seed_sd"]
    if spread.height == 0:
        out.append("_One seed per condition: the seed-to-seed variance is unknown._\n")
    else:
        out.append(markdown_table(_rows(spread), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]), ("Dataset", lambda r: r["dataset"]),
            ("Seeds", lambda r: r["seeds"]), ("Mean alignment", lambda r: num(r["mean_alignment"])),
            ("SD over seeds", lambda r: num(r["sd_mean_alignment"], 2)),
            ("% misaligned (coherent)", lambda r: num(r["misaligned_share"])),
            ("SD over seeds ", lambda r: num(r["sd_misaligned_share"], 2)),
        ]))
    out.append("## Design calculator\n")
    for row in _rows(tables["design"]):
        out.append(f"- **{row['model']}**: {design_sentence(row)}.")
    out.append("")
    out.append(markdown_table(_rows(tables["design"]), [
        ("Model", lambda r: r["model"]), ("Measure", lambda r: MEASURE_LABELS[r["measure"]]),
        ("Seeds", lambda r: str(r["seeds"])), ("n", lambda r: str(r["n"])), ("Questions", lambda r: str(r["questions"])),
        ("SD answer", lambda r: num(r["sd_answer"])), ("SD run x question", lambda r: num(r["sd_run_question"])),
        ("SD run (seed)", lambda r: f"{num(r['sd_run'])} ({r['run_sd_source']})"),
        (f"MDE ({round(100 * s.power)}% power)", lambda r: num(r["mde"])),
        (f"Seeds for {s.design_effect:g}", lambda r: "–" if r["seeds_needed"] is None else str(r["seeds_needed"])),
    ]))
    out.append("## Prompt variants\n")
    out.append(markdown_table(_rows(tables["prompt_variants"]), [
        ("Model", lambda r: r["model"]), ("Variant", lambda r: r["prompt_variant"]),
        ("Answers", lambda r: str(r["n_answers"])), ("Questions", lambda r: str(r["n_questions"])),
        ("Analysed", lambda r: "yes" if r["analysed"] else "no"),
    ]))
    out.append("## Level comparisons (persona+EM vs reference+EM; descriptive, not the verdict)\n")
    out.append(markdown_table(_rows(tables["comparisons"].filter(pl.col("dataset") != NO_EM)), comparison_columns))
    out.append(f"## Level comparisons significant after Benjamini-Hochberg (q = {s.alpha:g})\n")
    out.append(markdown_table(_rows(tables["significant"]), comparison_columns))
    if s.medical_pair:
        bad, good = s.medical_pair
        out.append(f"## Bad vs good medical ({bad} vs {good})\n")
        out.append(markdown_table(_rows(tables["medical"]), [
            ("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"]),
            (bad, lambda r: num(r["mean_bad"])), (good, lambda r: num(r["mean_good"])),
            ("Δ [95% CI]", lambda r: with_ci(r, "diff", "diff_low", "diff_high", sign=True)),
            ("Cohen's d [95% CI]", lambda r: with_ci(r, "cohens_d", "d_low", "d_high", digits=2, sign=True)),
            ("p", lambda r: pvalue(r["p"])), ("p adj.", lambda r: pvalue(r["p_adj"])),
        ]))
    out.append("## Tails (EM datasets every persona has)\n")
    tail_columns: list[Column] = [("Model", lambda r: r["model"]), ("Persona", lambda r: r["persona"])]
    for t in s.tail_thresholds:
        name = f"pct_below_{t:g}"
        tail_columns.append((f"% < {t:g}", lambda r, n=name: with_ci(r, n, f"{n}_low", f"{n}_high")))
    tail_columns += [
        (f"P{s.tail_quantile:g}", lambda r: with_ci(r, "p5", "p5_low", "p5_high")),
        ("% misaligned", lambda r: with_ci(r, "pct_misaligned", "pct_misaligned_low", "pct_misaligned_high")),
        ("Skew", lambda r: num(r["skew"], 2)), ("Kurtosis", lambda r: num(r["kurtosis"], 2)),
    ]
    out.append(markdown_table(_rows(personas), tail_columns))
    out.append("## Dataset difficulty\n")
    out.append(markdown_table(_rows(tables["datasets"]), [
        ("Model", lambda r: r["model"]), ("Rank", lambda r: "–" if r["rank"] is None else str(r["rank"])),
        ("Dataset", lambda r: _dataset_name(r["dataset"])),
        ("Mean over personas", lambda r: with_ci(r, "mean", "boot_low", "boot_high")),
        (f"{ref}", lambda r: with_ci(r, "reference_mean", "reference_low", "reference_high")),
        (f"{ref}: EM minus control", lambda r: with_ci(r, "em_effect", "em_effect_low", "em_effect_high", sign=True)),
        ("Mean % misaligned", lambda r: num(r["pct_misaligned"])),
    ]))
    out.append("## Cross-model (EM datasets both models have)\n")
    cross = tables["cross_model"]
    if cross.height == 0:
        out.append("_Needs two models with a shared EM dataset._\n")
    else:
        out.append(markdown_table(_rows(cross), [
            ("Models", lambda r: f"{r['model_a']} vs {r['model_b']}"), ("Persona", lambda r: r["persona"]),
            ("Datasets", lambda r: str(r["n_datasets"])),
            ("Mean A", lambda r: with_ci(r, "mean_a", "a_low", "a_high")),
            ("Mean B", lambda r: with_ci(r, "mean_b", "b_low", "b_high")),
            ("A − B", lambda r: with_ci(r, "diff", "diff_low", "diff_high", sign=True)),
            ("p adj.", lambda r: pvalue(r["p_adj"])),
            (f"Effect vs {ref}: A − B", lambda r: with_ci(r, "effect_diff", "effect_diff_low", "effect_diff_high", sign=True)),
        ]))
    return "\n".join(out)


def figures_section(figures: Sequence[str]) -> str:
    lines = ["## Figures", ""]
    for path in figures:
        name = Path(path).stem
        lines += [f"**{name}**: {CAPTIONS.get(name, '')}", "", f"![{name}]({Path(path).name})", ""]
    return "\n".join(lines)


def render_results(
    tables: dict[str, pl.DataFrame],
    settings: StatsSettings,
    figures: Sequence[str] = (),
    extra: str | None = None,
    extra_findings: Sequence[str] = (),
) -> str:
    """RESULTS.md; `extra` (a Markdown section) is appended, `extra_findings` (lines with
    source notes) join the findings."""
    parts = [
        "# Results",
        "",
        "Generated by the workflow from the judged answers; every number and finding below is computed from "
        "the tables in `tables/` (nothing here is written by hand).",
        "",
        "## Findings",
        "",
        *[line if line.startswith("  - ") else f"- {line}" for line in [*findings(tables, settings),
                                                                        *extra_findings]],
        "",
        data_section(tables, settings),
        missing_section(tables),
        method_section(settings),
        tables_section(tables, settings),
        figures_section(figures),
    ]
    if extra:
        parts += ["", extra.strip(), ""]
    return "\n".join(parts).rstrip() + "\n"


def read_tables(paths: dict[str, str | Path]) -> dict[str, pl.DataFrame]:
    return {name: read_table(paths[name]) for name in TABLES}


H4_MEASURES = {
    "induced_misalignment": "induced misalignment (steering with the reference's EM direction)",
    "ablation_efficacy": "ablation efficacy (the reference's EM direction projected out)",
}


def h4_verdict_line(row: dict) -> str:
    """One H4 verdict: a persona against the reference on one measure, model and dataset."""
    where = f"H4 {row['model']} / {_dataset_name(row['dataset'])}: {row['persona']} vs {row['reference']}"
    measure = H4_MEASURES.get(row["measure"], row["measure"])
    if row["measure"] == "induced_misalignment" and row["scale"] is not None:
        measure += f" at scale {row['scale']:g}"
    if row["status"] != "ok":
        return f"{where}, {measure}: {row['verdict']}"
    return (
        f"{where}, {measure}: {signed(row['estimate'])} points of the misaligned share "
        f"{interval(row['low'], row['high'])} (persona {signed(row['persona_effect'])}, reference "
        f"{signed(row['reference_effect'])}; {row['n_questions']} questions, {row['n_seeds']} seed(s)), "
        f"BH-adjusted p {pvalue(row['p_adj'])}: {row['verdict']}"
    )


def h4_section(tests: pl.DataFrame) -> str:
    """RESULTS.md's H4 section: a verdict line per persona, measure, model and dataset of
    the table h4_tests (rows without the data to compare say so)."""
    lines = [
        "## H4: the EM direction across personas",
        "",
        "Each persona against the reference persona: the rise of the misaligned share (among coherent answers, "
        "points of %) when the reference's EM direction is added to the persona model without EM, and the fall of "
        "the misaligned share of persona+EM when the reference's direction is projected out, each as a difference "
        "from the reference's own (docs/methods.md, H4). Benjamini-Hochberg within model and measure. Tables: "
        "`h4_tests`, `h4_steering`, `h4_ablation`, `h4_directions`, `h4_geometry`; figures "
        "`h4_steering.png`, `h4_geometry.png`.",
        "",
    ]
    if tests.height == 0:
        return "\n".join([*lines, "- H4: no persona besides the reference to compare (no rows in h4_tests)", ""])
    lines += [f"- {h4_verdict_line(row)}" for row in tests.to_dicts()]
    return "\n".join([*lines, ""])


def _step(value) -> str:
    return "none" if value is None else f"{value:,.0f}"


def h3_verdict_line(row: dict) -> str:
    """One H3 verdict: a persona against the reference on the transition step of EM."""
    where = f"H3 {row['model']} / {_dataset_name(row['dataset'])}: {row['persona']} vs {row['reference']}"
    steps = f"transition at step {_step(row['persona_step'])} vs {_step(row['reference_step'])}"
    if row["status"] != "ok":
        return f"{where}, {steps}: {row['verdict']}"
    ratio = 10 ** row["estimate"]
    return (
        f"{where}, {steps} (persona/reference {ratio:.2f}x, 95% CI {10 ** row['low']:.2f}-"
        f"{10 ** row['high']:.2f}; {row['n_questions']} questions, {row['n_seeds']} seed(s)), "
        f"BH-adjusted p {pvalue(row['p_adj'])}: {row['verdict']}"
    )


def h3_section(tests: pl.DataFrame) -> str:
    """RESULTS.md's H3 section: a verdict line per persona, model and EM dataset of the
    table h3_tests ("no transition within training" is an outcome of its own)."""
    lines = [
        "## H3: when EM sets in",
        "",
        "Each persona against the reference persona on the training step at which the misaligned share "
        "(among coherent answers) rises: the midpoint of a logistic in log(step) fitted to the judged "
        "answers of the EM runs' analysis checkpoints, pooled over seeds, with a cluster bootstrap over "
        "questions and seeds; a fitted rise below `h3.min_rise` points, or a midpoint outside the evaluated "
        "steps, is \"no transition within training\" (docs/methods.md, H3). Benjamini-Hochberg within "
        "model. Tables: `h3_tests`, `h3_transitions` (with the step of maximum adapter rotation per run "
        "and its agreement with the behavioural step), `h3_curves`, `h3_mechanistic`; figures "
        "`h3_curves.png`, `h3_transitions.png`.",
        "",
    ]
    if tests.height == 0:
        return "\n".join([*lines, "- H3: no persona besides the reference to compare (no rows in h3_tests)", ""])
    lines += [f"- {h3_verdict_line(row)}" for row in tests.to_dicts()]
    return "\n".join([*lines, ""])
