# Statistics, figures and the results report (docs/methods.md, Statistics).

FINAL = "results/final"
ANSWERS = "results/final/answers.parquet"
TABLE_FILE = "results/final/tables/{name}.csv"
FIGURE_FILE = "results/final/{figure}.png"
RESULTS_MD = "results/final/RESULTS.md"


report: "../report/workflow.rst"


rule answers_table:
    input:
        answer_inputs,
    output:
        answers=ANSWERS,
    log:
        "logs/answers_table.log",
    benchmark:
        "logs/benchmarks/answers_table.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(8_000),
        runtime=minutes(30),
    script:
        "../workflow_scripts/rules/answers_table.py"


rule statistics:
    input:
        unpack(statistics_inputs),
    output:
        **table_outputs(),
    log:
        "logs/statistics.log",
    benchmark:
        "logs/benchmarks/statistics.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(8_000),
        runtime=minutes(30),
    params:
        settings=stats_settings,
        expected=expected_conditions,
    script:
        "../workflow_scripts/rules/statistics.py"


rule figure:
    input:
        unpack(figure_inputs),
    output:
        figure=report(
            FIGURE_FILE,
            caption="../report/figure.rst",
            category="Figures",
            labels={"figure": "{figure}"},
        ),
    log:
        "logs/figure/{figure}.log",
    benchmark:
        "logs/benchmarks/figure/{figure}.tsv"
    wildcard_constraints:
        figure="|".join(FIGURES),
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(4_000),
        runtime=minutes(15),
    params:
        settings=stats_settings,
        caption=figure_caption,
    script:
        "../workflow_scripts/rules/figure.py"


rule results_report:
    input:
        unpack(results_report_inputs),
    output:
        results=report(RESULTS_MD, caption="../report/results.rst", category="Results"),
    log:
        "logs/results_report.log",
    benchmark:
        "logs/benchmarks/results_report.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=gpu_mem(2_000),
        runtime=minutes(10),
    params:
        settings=stats_settings,
    script:
        "../workflow_scripts/rules/results_report.py"
