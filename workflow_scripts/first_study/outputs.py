"""Names of the reproduction section's tables (cheap to import: rules/common.smk reads
them at parse time). Name in `Reproduction.tables` -> file stem under
results/final/tables/ (a `.tsv`), also the table a finding's source note names."""

FILES = {
    "import_summary": "import_summary",
    "persona_table": "reproduction_persona_table",
    "hypothesis_cells": "reproduction_comparisons",
    "hypotheses": "reproduction_hypotheses",
    "persona_effect": "persona_effect",
    "persona_effect_summary": "persona_effect_summary",
    "pooling": "reproduction_pooling",
    "reliability": "judge_reliability",
}


# tables of the statistics stage the section reads
STATISTICS_TABLES = ("comparisons", "protection", "hypothesis_summary")
