# Statistics, figures and the results report (DESIGN.md section 6).


report: "../report/workflow.rst"


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


rule statistics:
    input:
        answers=ANSWERS,
    output:
        **table_outputs(),
    params:
        settings=stats_settings,
        expected=expected_conditions,
    log:
        "logs/statistics.log",
    benchmark:
        "benchmarks/statistics.tsv"
    threads: 1
    resources:
        mem_mb=gpu_mem(8_000),
        runtime=minutes(30),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/stats_tables.py"


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
    params:
        settings=stats_settings,
        caption=figure_caption,
    wildcard_constraints:
        figure="|".join(FIGURES),
    log:
        "logs/figure/{figure}.log",
    benchmark:
        "benchmarks/figure/{figure}.tsv"
    threads: 1
    resources:
        mem_mb=gpu_mem(4_000),
        runtime=minutes(15),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/figures.py"


rule results_report:
    input:
        unpack(results_report_inputs),
    output:
        results=report(RESULTS_MD, caption="../report/results.rst", category="Results"),
    params:
        settings=stats_settings,
    log:
        "logs/results_report.log",
    benchmark:
        "benchmarks/results_report.tsv"
    threads: 1
    resources:
        mem_mb=gpu_mem(2_000),
        runtime=minutes(10),
    conda:
        "../envs/analysis.yaml"
    script:
        "../workflow_scripts/report.py"
