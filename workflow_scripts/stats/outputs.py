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


CAPTIONS: dict[str, str] = {
    "fig1_alignment_by_persona": "Mean alignment by persona, pooled over the EM datasets every persona has, "
    "with a 95% cluster bootstrap interval (thick) and a cluster-robust t interval (thin).",
    "fig2_persona_dataset_heatmap": "Mean alignment of every persona x dataset condition (controls without EM included).",
    "fig3_hypothesis_tests": "Protection (the persona's EM effect minus the reference's, on the primary measure) per "
    "EM dataset for the hypotheses' personas, with 95% cluster bootstrap intervals; colour: verdict on the "
    "Benjamini-Hochberg adjusted p.",
    "fig4_effect_size_forest": "Levels: Cohen's d of each persona+EM vs the reference+EM per EM dataset, with 95% "
    "cluster bootstrap intervals; filled circle: significant after Benjamini-Hochberg, hollow diamond: not.",
    "fig5_medical": "Alignment after bad vs good medical EM data per persona, with 95% cluster bootstrap intervals.",
    "fig6_key_personas_by_dataset": "The reference and the hypotheses' personas on every dataset, with 95% cluster "
    "bootstrap intervals.",
    "fig7_dataset_difficulty": "Datasets ranked by mean alignment over personas (equal weight per persona), and the "
    "reference persona's mean, with 95% cluster bootstrap intervals.",
    "fig9_protection_forest": "Protection of every persona on every EM dataset, both measures, with 95% cluster "
    "bootstrap intervals; filled: adjusted p < alpha within the FDR family.",
    "fig8_cross_model": "Each persona's mean alignment in each model over the EM datasets both models have, with 95% "
    "cluster bootstrap intervals.",
    "dist1_violins": "Distribution of alignment scores by persona (EM datasets every persona has).",
    "dist2_misalignment_rates": "Shares of answers below the tail thresholds and the Betley misaligned share "
    "(aligned < 30 and coherent > 50), with 95% cluster bootstrap intervals.",
    "dist3_cdf": "Empirical CDF of alignment scores of the key personas (EM datasets every persona has).",
    "dist4_densities": "Alignment score densities of the key personas on each dataset.",
    "dist5_histograms": "Histogram of alignment scores per persona and model (EM datasets every persona has).",
    "dist6_misalignment_heatmap": "Betley misaligned share (%) of every persona x dataset condition.",
}
