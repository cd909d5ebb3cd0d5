# Statistics, figures and the results report (docs/methods.md, Statistics).

FINAL = "results/final"
ANSWERS = "results/final/answers.parquet"
TABLE_FILE = "results/final/tables/{name}.csv"
FIGURE_FILE = "results/final/{figure}.png"
RESULTS_MD = "results/final/RESULTS.md"
FIRST_STUDY_TABLE_FILE = "results/final/tables/{name}.tsv"
# the pages of `snakemake --report`: it shows HTML files inside itself (a CSV or
# Markdown file would only be a download)
RESULTS_HTML = "results/final/report/RESULTS.html"
FINDINGS_HTML = "results/final/report/findings.html"
TABLE_PAGE = "results/final/report/tables/{name}.html"


report: "../report/workflow.rst"


# the report's rule graph: one node per rule, the edges of `snakemake --rulegraph`
use_rule_graph_in_report()


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
        mem_mb=8_000,
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
        mem_mb=8_000,
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
            category=figure_category,
            subcategory="Figures",
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
        mem_mb=4_000,
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
        results=RESULTS_MD,
    log:
        "logs/results_report.log",
    benchmark:
        "logs/benchmarks/results_report.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=minutes(10),
    params:
        settings=stats_settings,
    script:
        "../workflow_scripts/rules/results_report.py"


rule report_pages:
    input:
        unpack(report_pages_inputs),
    output:
        **table_page_outputs(),
        results=report(
            RESULTS_HTML,
            caption="../report/results.rst",
            category=RESULTS_CATEGORY,
            labels={"page": "RESULTS"},
        ),
        findings=FINDINGS_HTML,
    log:
        "logs/report_pages.log",
    benchmark:
        "logs/benchmarks/report_pages.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=minutes(10),
    params:
        tables=report_table_names,
    script:
        "../workflow_scripts/rules/report_pages.py"
