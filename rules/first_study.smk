# Import of the first, script-based study's judged answers (docs/methods.md,
# Re-analysis of the first study): its judge-run JSON files become rows of the
# analysis schema, the workflow's statistics run on them, and the first study's own
# method is set beside them (the "Reproduction" section of RESULTS.md).


IMPORTED_ANSWERS = "results/imported/first_study_answers.parquet"
IMPORTED_RUNS = "results/imported/first_study_runs.parquet"
IMPORTED_DESIGN = "results/imported/first_study_design.tsv"
REPRODUCTION_TABLES = {
    name: f"results/final/tables/{stem}.tsv"
    for name, stem in REPRODUCTION_FILES.items()
}
REPRODUCTION = {
    "report": "results/final/tables/reproduction.md",
    "findings": "results/final/tables/reproduction_findings.md",
    **REPRODUCTION_TABLES,
}


rule import_first_study:
    input:
        source=first_study_source,
    output:
        answers=IMPORTED_ANSWERS,
        runs=IMPORTED_RUNS,
        design=IMPORTED_DESIGN,
    log:
        "logs/first_study/import.log",
    benchmark:
        "logs/benchmarks/first_study/import.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4_000,
        runtime=minutes(20),
    params:
        settings=first_study_import_settings,
    script:
        "../workflow_scripts/rules/import_first_study.py"


rule first_study_reproduction:
    input:
        unpack(first_study_reproduction_inputs),
    output:
        **REPRODUCTION,
    log:
        "logs/first_study/reproduction.log",
    benchmark:
        "logs/benchmarks/first_study/reproduction.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=first_study_report_settings,
    script:
        "../workflow_scripts/rules/first_study_reproduction.py"
