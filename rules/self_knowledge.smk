# Self-knowledge (docs/methods.md, Self-knowledge): the battery scored from each persona
# model's own token probabilities, for its no-EM control and every EM adapter (one
# engine load per persona model), then the classes coherent / inverted / aligned per
# condition, their distribution per persona and the tests against the reference.

SELF_KNOWLEDGE_SCORES = "results/{model}/self_knowledge/{persona}.parquet"
SELF_KNOWLEDGE_FIGURE = "results/final/{name}.png"


rule self_knowledge_score:
    input:
        model=persona_model_dir,
        adapters=em_adapters_of_persona,
        judged=self_knowledge_judged,
        item_file=SELF_KNOWLEDGE_ITEMS,
    output:
        scores=SELF_KNOWLEDGE_SCORES,
    log:
        "logs/self_knowledge_score/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/self_knowledge_score/{model}/{persona}.tsv"
    conda:
        SELF_KNOWLEDGE_ENV
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(2),
    params:
        settings=self_knowledge_score_settings,
        conditions=sampling_conditions,
    script:
        "../workflow_scripts/rules/self_knowledge_score.py"


rule self_knowledge_summary:
    input:
        scores=self_knowledge_score_files,
        answers=ANSWERS,
    output:
        **self_knowledge_table_outputs(),
        self_knowledge_scatter_figure=SELF_KNOWLEDGE_FIGURE.format(
            name="self_knowledge_scatter"
        ),
        self_knowledge_classes_figure=SELF_KNOWLEDGE_FIGURE.format(
            name="self_knowledge_classes"
        ),
    log:
        "logs/self_knowledge_summary.log",
    benchmark:
        "logs/benchmarks/self_knowledge_summary.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=self_knowledge_summary_settings,
        dpi=config["statistics"]["figure_dpi"],
    script:
        "../workflow_scripts/rules/self_knowledge_summary.py"
