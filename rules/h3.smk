# H3: when EM sets in (docs/methods.md, H3). Each persona's EM analysis checkpoints
# sampled with one engine load of the persona model and judged like the main
# evaluation; mechanistic curves of each run from its checkpoints alone; transition
# steps, their agreement and the test of each persona against the reference.

H3_SAMPLES = "results/{model}/h3/{persona}.samples.parquet"
H3_JUDGED = "results/{model}/h3/{persona}/{dataset}.judged.parquet"
H3_JUDGE_SUMMARY = "results/{model}/h3/{persona}/{dataset}.judge.json"
H3_CURVES = "results/{model}/h3/mechanistic/{persona}/{dataset}/s{seed}.parquet"
H3_CURVES_SUMMARY = "results/{model}/h3/mechanistic/{persona}/{dataset}/s{seed}.json"
H3_FIGURE = "results/final/{name}.png"


rule h3_sample:
    input:
        model=persona_model_dir,
        analysis=h3_analysis_dirs_of_persona,
        questions=QUESTIONS_FILE,
    output:
        samples=H3_SAMPLES,
    log:
        "logs/h3_sample/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/h3_sample/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        sampling=h3_sampling_settings,
        runs=h3_runs_of_persona,
        stride=H3["checkpoint_stride"],
        question_ids=H3["questions"],
    script:
        "../workflow_scripts/rules/h3_sample.py"


rule h3_judge:
    input:
        unpack(judge_inputs),
        samples=H3_SAMPLES,
        questions=QUESTIONS_FILE,
    output:
        judged=H3_JUDGED,
        summary=H3_JUDGE_SUMMARY,
    log:
        "logs/h3_judge/{model}/{persona}/{dataset}.log",
        server="logs/h3_judge/{model}/{persona}/{dataset}.server.log",
    benchmark:
        "logs/benchmarks/h3_judge/{model}/{persona}/{dataset}.tsv"
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
        "../workflow_scripts/rules/h3_judge.py"


rule h3_mechanistic:
    input:
        analysis=EM_ANALYSIS_CHECKPOINTS,
        adapter=EM_ADAPTER,
    output:
        curves=H3_CURVES,
        summary=H3_CURVES_SUMMARY,
    log:
        "logs/h3_mechanistic/{model}/{persona}/{dataset}/s{seed}.log",
    benchmark:
        "logs/benchmarks/h3_mechanistic/{model}/{persona}/{dataset}/s{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        stride=H3["checkpoint_stride"],
    script:
        "../workflow_scripts/rules/h3_mechanistic.py"


rule h3_analysis:
    input:
        unpack(h3_analysis_inputs),
    output:
        **h3_table_outputs(),
        curves_figure=H3_FIGURE.format(name="h3_curves"),
        transitions_figure=H3_FIGURE.format(name="h3_transitions"),
    log:
        "logs/h3_analysis.log",
    benchmark:
        "logs/benchmarks/h3_analysis.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=h3_test_settings,
        order=h3_analysis_keys,
        dpi=config["statistics"]["figure_dpi"],
    script:
        "../workflow_scripts/rules/h3_analysis.py"
