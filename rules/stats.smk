# Statistics, figures and the results report (DESIGN.md section 6).


rule answers_table:
    input:
        answer_inputs,
    output:
        answers=ANSWERS,
    log:
        "logs/answers_table.log",
    benchmark:
        "benchmarks/answers_table.tsv"
    threads: 1
    resources:
        mem_mb=gpu_mem(8_000),
        runtime=minutes(30),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/answers_table.py"
