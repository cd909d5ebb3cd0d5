# Judging: the logprob method (docs/methods.md, Judging), cached by content hash so
# a rerun or a resumed run never pays for the same judgement twice. The cache
# (config judge.cache_dir) is not an output: Snakemake deletes the outputs of a
# failed job, and the cache must outlive it.

JUDGED = "results/{model}/judged/{persona}/{dataset}.parquet"
JUDGE_SUMMARY = "results/{model}/judged/{persona}/{dataset}.summary.json"


rule judge:
    input:
        unpack(judge_inputs),
        samples=SAMPLES,
        questions=QUESTIONS_FILE,
    output:
        judged=protected(JUDGED),
        summary=JUDGE_SUMMARY,
    log:
        "logs/judge/{model}/{persona}/{dataset}.log",
        server="logs/judge/{model}/{persona}/{dataset}.server.log",
    benchmark:
        "logs/benchmarks/judge/{model}/{persona}/{dataset}.tsv"
    conda:
        JUDGE_ENV
    threads: judge_threads()
    resources:
        gpu=judge_gpus(),
        internet=judge_internet(),
        mem_mb=judge_mem(),
        runtime=hours(4),
    params:
        judge=judge_settings,
    script:
        "../workflow_scripts/rules/judge.py"


# Secondary judges (config judges.secondary): each scores the answers of the primary
# judged tables (all, or a stratified subsample), through the same cache and accounting;
# their agreement with the primary judge, and the verdicts recomputed with each.
JUDGED_BY = "results/{model}/judged_by/{judge}/{persona}/{dataset}.parquet"
JUDGED_BY_SUMMARY = "results/{model}/judged_by/{judge}/{persona}/{dataset}.summary.json"
JUDGE_AGREEMENT = "results/final/judges/{judge}/agreement.csv"
JUDGE_ROBUSTNESS = "results/final/judges/robustness.csv"


rule judge_secondary:
    input:
        unpack(secondary_judge_inputs),
        primary=JUDGED,
        questions=QUESTIONS_FILE,
    output:
        judged=protected(JUDGED_BY),
        summary=JUDGED_BY_SUMMARY,
    log:
        "logs/judge_secondary/{judge}/{model}/{persona}/{dataset}.log",
    benchmark:
        "logs/benchmarks/judge_secondary/{judge}/{model}/{persona}/{dataset}.tsv"
    wildcard_constraints:
        judge=secondary_judge_names(),
    conda:
        secondary_judge_env
    threads: secondary_judge_threads()
    resources:
        gpu=secondary_judge_gpus(),
        internet=secondary_judge_internet(),
        mem_mb=secondary_judge_mem(),
        runtime=hours(4),
    params:
        judge=secondary_judge_settings,
        subsample=secondary_subsample,
    script:
        "../workflow_scripts/rules/judge_secondary.py"


rule judge_agreement:
    input:
        unpack(judge_agreement_inputs),
    output:
        agreement=JUDGE_AGREEMENT,
    log:
        "logs/judge_agreement/{judge}.log",
    benchmark:
        "logs/benchmarks/judge_agreement/{judge}.tsv"
    wildcard_constraints:
        judge=secondary_judge_names(),
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=4_000,
        runtime=minutes(15),
    params:
        settings=judge_agreement_settings,
    script:
        "../workflow_scripts/rules/judge_agreement.py"


rule judge_robustness:
    input:
        unpack(judge_robustness_inputs),
    output:
        robustness=JUDGE_ROBUSTNESS,
    log:
        "logs/judge_robustness.log",
    benchmark:
        "logs/benchmarks/judge_robustness.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=stats_settings,
        judges=judge_robustness_files,
    script:
        "../workflow_scripts/rules/judge_robustness.py"
