# Judging: the logprob method of DESIGN.md section 5, cached by content hash so
# a rerun or a resumed run never pays for the same judgement twice.


rule judge:
    input:
        unpack(judge_model_inputs),
        samples=SAMPLES,
        questions=QUESTIONS_FILE,
    output:
        judged=protected(JUDGED),
    params:
        judge=judge_settings,
    log:
        "logs/judge/{model}/{persona}/{dataset}.log",
    benchmark:
        "benchmarks/judge/{model}/{persona}/{dataset}.tsv"
    threads: 4
    resources:
        mem_mb=gpu_mem(16_000),
        runtime=hours(4),
    conda:
        "../envs/train.yaml"
    script:
        "../workflow_scripts/judge.py"
