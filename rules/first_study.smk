# Import of the first, script-based study's judged answers (docs/methods.md,
# Re-analysis of the first study): its judge-run JSON files become rows of the
# analysis schema, and its own statistical method is set beside the corrected one
# (the "Reproduction" section of RESULTS.md).


IMPORTED_ANSWERS = "results/imported/first_study_answers.parquet"
IMPORTED_RUNS = "results/imported/first_study_runs.parquet"
REPRODUCTION = {
    "report": "results/final/tables/reproduction.md",
    "persona_table": "results/final/tables/reproduction_persona_table.tsv",
    "comparisons": "results/final/tables/reproduction_comparisons.tsv",
    "persona_effect": "results/final/tables/persona_effect.tsv",
    "reliability": "results/final/tables/judge_reliability.tsv",
}


rule import_first_study:
    input:
        source=first_study_source,
    output:
        answers=IMPORTED_ANSWERS,
        runs=IMPORTED_RUNS,
    log:
        "logs/first_study/import.log",
    benchmark:
        "logs/benchmarks/first_study/import.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(4_000),
        runtime=minutes(20),
    params:
        settings=first_study_import_settings,
    script:
        "../workflow_scripts/rules/import_first_study.py"


rule first_study_reproduction:
    input:
        runs=IMPORTED_RUNS,
    output:
        report=REPRODUCTION["report"],
        persona_table=REPRODUCTION["persona_table"],
        comparisons=REPRODUCTION["comparisons"],
        persona_effect=REPRODUCTION["persona_effect"],
        reliability=REPRODUCTION["reliability"],
    log:
        "logs/first_study/reproduction.log",
    benchmark:
        "logs/benchmarks/first_study/reproduction.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(8_000),
        runtime=minutes(30),
    params:
        settings=first_study_report_settings,
    script:
        "../workflow_scripts/rules/first_study_reproduction.py"
