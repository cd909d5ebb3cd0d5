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
