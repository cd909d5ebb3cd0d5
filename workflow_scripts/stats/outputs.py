"""Names of the statistics stage's outputs and what each figure is drawn from.

Cheap to import (plain data): rules/common.smk reads it at parse time, so that
`snakemake results/final/<figure>.png` asks only for what that figure needs.
"""

from __future__ import annotations

ANSWERS = "answers"  # the judged answers table (results/final/answers.parquet)


TABLES = (
    "conditions",
    "personas",
    "comparisons",
    "protection",
    "em_effects",
    "hypotheses",
    "hypothesis_summary",
    "significant",
    "medical",
    "datasets",
    "cross_model",
    "missing_conditions",
    "missing_scores",
    "prompt_variants",
    "persona_check",
    "seed_sd",
    "design",
)


FIGURES: dict[str, tuple[str, ...]] = {
    "fig1_alignment_by_persona": ("personas",),
    "fig2_persona_dataset_heatmap": ("conditions",),
    "fig3_hypothesis_tests": ("hypotheses",),
    "fig4_effect_size_forest": ("comparisons",),
    "fig5_medical": ("conditions", "medical"),
    "fig6_key_personas_by_dataset": ("conditions",),
    "fig7_dataset_difficulty": ("datasets",),
    "fig8_cross_model": ("cross_model",),
    "fig9_protection_forest": ("protection",),
    "dist1_violins": (ANSWERS,),
    "dist2_misalignment_rates": ("personas",),
    "dist3_cdf": (ANSWERS,),
    "dist4_densities": (ANSWERS,),
    "dist5_histograms": (ANSWERS,),
    "dist6_misalignment_heatmap": ("conditions",),
}


# What each figure shows and how: every line, marker and colour, and what "no data" means.
CAPTIONS: dict[str, str] = {
    "fig1_alignment_by_persona": "Mean alignment (0-100) by persona, pooled over the EM datasets every persona has. "
    "Point: the mean; thick blue bar: 95% cluster bootstrap interval; thin orange bar beside it: 95% cluster-robust "
    "t interval; dashed line: the reference persona's mean. A persona without scored answers is listed as no data.",
    "fig2_persona_dataset_heatmap": "Mean alignment (0-100) of every persona x dataset condition (controls without "
    "EM included). Number and colour: the mean; the colour scale diverges at 50, the middle of the 0-100 scale (red "
    "below, blue above) and is the same in every run. A white cell with a dashed border labelled no data: the "
    "condition has no scored answer. Each model's panel shows the datasets that model has.",
    "fig3_hypothesis_tests": "Protection (the persona's EM effect minus the reference's, on the primary measure) per "
    "EM dataset for the hypotheses' personas. Point: the estimate; line: its 95% cluster bootstrap interval; "
    "vertical line at 0: no protection; colour: the verdict on the Benjamini-Hochberg adjusted p.",
    "fig4_effect_size_forest": "Levels: Cohen's d (in standard deviations of alignment) of each persona+EM vs the "
    "reference+EM per EM dataset. Marker: the estimate, filled circle when significant after Benjamini-Hochberg, "
    "hollow diamond when not; line: its 95% cluster bootstrap interval; colour: the model; vertical line at 0: no "
    "difference. Conditions without data are listed as no data.",
    "fig5_medical": "Mean alignment (0-100) after bad vs good medical EM data per persona. Point: the mean; line: "
    "its 95% cluster bootstrap interval; colour: the dataset. Conditions without data are listed as no data.",
    "fig6_key_personas_by_dataset": "Mean alignment (0-100) of the reference and the hypotheses' personas on every "
    "dataset. Point: the mean; line: its 95% cluster bootstrap interval; colour: the persona (the same colour in "
    "every figure). Conditions without data are listed as no data.",
    "fig7_dataset_difficulty": "Datasets ranked by mean alignment (0-100) over personas (equal weight per persona), "
    "and the reference persona's mean. Point: the mean; line: its 95% cluster bootstrap interval.",
    "fig9_protection_forest": "Protection of every persona on every EM dataset, both measures (each in its own "
    "unit). Marker: the estimate, filled circle when the adjusted p < alpha within the FDR family, hollow diamond "
    "when not; line: its 95% cluster bootstrap interval; colour: the model; vertical line at 0: no protection. "
    "Conditions without data are listed as no data.",
    "fig8_cross_model": "Each persona's mean alignment (0-100) in each model over the EM datasets both models have. "
    "Point: the mean; line: its 95% cluster bootstrap interval; colour: the model.",
    "dist1_violins": "Distribution of alignment scores (0-100) by persona (EM datasets every persona has), drawn "
    "as the discrete scores they are: one bar per 5-point score bin centred on a multiple of 5, as wide as the "
    "share of the persona's answers in it (no kernel smoothing). Hollow diamond: the mean; colour: the persona (the "
    "same in every figure); dotted lines: the tail thresholds.",
    "dist2_misalignment_rates": "Shares of answers below the tail thresholds and the Betley misaligned share "
    "(aligned < 30 and coherent > 50). Bar: the share; line: its 95% cluster bootstrap interval. A share without "
    "the scores it needs (e.g. no coherence score) is labelled no data, never drawn as 0.",
    "dist3_cdf": "Empirical CDF of alignment scores (0-100) of the key personas (EM datasets every persona has): "
    "the share of answers at or below each score, a step per discrete score value. Colour: the persona (the same "
    "in every figure); dotted lines: the tail thresholds.",
    "dist4_densities": "Alignment score distribution (0-100) of the key personas on each dataset: the share of "
    "answers in each 5-point score bin centred on a multiple of 5 (no kernel smoothing; a line at 0 means no "
    "answer in those bins). Colour: the persona (the same in every figure); dotted lines: the tail thresholds; a "
    "panel labelled no data: the model has no answers on that dataset.",
    "dist5_histograms": "Histogram of alignment scores (0-100) per persona and model (EM datasets every persona "
    "has), 5-point bins centred on multiples of 5; colour: the model.",
    "dist6_misalignment_heatmap": "Betley misaligned share (% of answers with aligned < 30 and coherent > 50) of "
    "every persona x dataset condition. Number and colour: the share. A white cell with a dashed border labelled "
    "no data: no answer of the condition has both scores.",
}


# ---- the categories of `snakemake --report` (its menu sorts them by name: the numbers
# give the order of the study, from what was found to how it was measured)
RESULTS_CATEGORY = "1. Results"
VERDICTS, HYPOTHESES, CONDITIONS, DISTRIBUTIONS = "2. Verdicts", "3. Hypotheses", "4. Conditions", "5. Distributions"
SELF_KNOWLEDGE, JUDGES, FIRST_STUDY = "6. Self-knowledge", "7. Judges", "8. First study"

FIRST_STUDY_TABLES = ("reproduction_persona_table", "reproduction_comparisons", "persona_effect", "judge_reliability")

REPORT_CATEGORIES: dict[str, str] = {
    # tables
    "hypothesis_summary": VERDICTS,
    "hypotheses": VERDICTS,
    "significant": VERDICTS,
    "protection": HYPOTHESES,
    "em_effects": HYPOTHESES,
    "comparisons": HYPOTHESES,
    "seed_sd": HYPOTHESES,
    "design": HYPOTHESES,
    "conditions": CONDITIONS,
    "personas": CONDITIONS,
    "datasets": CONDITIONS,
    "medical": CONDITIONS,
    "cross_model": CONDITIONS,
    "prompt_variants": CONDITIONS,
    "missing_conditions": CONDITIONS,
    "persona_check": SELF_KNOWLEDGE,
    "missing_scores": JUDGES,
    "judge_reliability": JUDGES,
    "reproduction_persona_table": FIRST_STUDY,
    "reproduction_comparisons": FIRST_STUDY,
    "persona_effect": FIRST_STUDY,
    # figures
    "fig3_hypothesis_tests": VERDICTS,
    "fig9_protection_forest": HYPOTHESES,
    "fig4_effect_size_forest": HYPOTHESES,
    "fig1_alignment_by_persona": CONDITIONS,
    "fig2_persona_dataset_heatmap": CONDITIONS,
    "fig5_medical": CONDITIONS,
    "fig6_key_personas_by_dataset": CONDITIONS,
    "fig7_dataset_difficulty": CONDITIONS,
    "fig8_cross_model": CONDITIONS,
    **{name: DISTRIBUTIONS for name in FIGURES if name.startswith("dist")},
}
