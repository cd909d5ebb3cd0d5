# H4: the EM direction (docs/methods.md, H4). Activations of each persona+EM model's
# judged answers (written once), the mean-difference direction per layer, steering of
# each persona model without EM with the reference persona's direction, ablation of
# directions from each persona+EM model, the judge on those answers, and the analysis.

H4_ACTIVATIONS = (
    "results/{model}/h4/activations/{persona}/{dataset}/s{seed}.safetensors"
)
H4_ACTIVATION_INDEX = (
    "results/{model}/h4/activations/{persona}/{dataset}/s{seed}.parquet"
)
H4_DIRECTION = "results/{model}/h4/directions/{persona}/{dataset}/s{seed}.safetensors"
H4_DIRECTION_SUMMARY = "results/{model}/h4/directions/{persona}/{dataset}/s{seed}.json"
H4_STEER_SAMPLES = "results/{model}/h4/steer/{persona}/{dataset}.samples.parquet"
H4_ABLATE_SAMPLES = (
    "results/{model}/h4/ablate/{persona}/{dataset}/s{seed}.samples.parquet"
)
H4_SAMPLES = "results/{model}/h4/{h4run}.samples.parquet"
H4_JUDGED = "results/{model}/h4/{h4run}.judged.parquet"
H4_JUDGE_SUMMARY = "results/{model}/h4/{h4run}.judge.json"
H4_FIGURE = "results/final/{name}.png"


rule h4_activations:
    input:
        model=persona_model_dir,
        adapter=EM_ADAPTER,
        judged=JUDGED,
    output:
        activations=H4_ACTIVATIONS,
        index=H4_ACTIVATION_INDEX,
    log:
        "logs/h4_activations/{model}/{persona}/{dataset}/s{seed}.log",
    benchmark:
        "logs/benchmarks/h4_activations/{model}/{persona}/{dataset}/s{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(2),
    params:
        settings=h4_extraction_settings,
    script:
        "../workflow_scripts/rules/h4_activations.py"


rule h4_direction:
    input:
        activations=H4_ACTIVATIONS,
        index=H4_ACTIVATION_INDEX,
    output:
        direction=H4_DIRECTION,
        summary=H4_DIRECTION_SUMMARY,
    log:
        "logs/h4_direction/{model}/{persona}/{dataset}/s{seed}.log",
    benchmark:
        "logs/benchmarks/h4_direction/{model}/{persona}/{dataset}/s{seed}.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=h4_direction_settings,
    script:
        "../workflow_scripts/rules/h4_direction.py"


rule h4_steer:
    input:
        unpack(h4_steer_inputs),
        model=persona_model_dir,
        questions=QUESTIONS_FILE,
    output:
        samples=H4_STEER_SAMPLES,
    log:
        "logs/h4_steer/{model}/{persona}/{dataset}.log",
    benchmark:
        "logs/benchmarks/h4_steer/{model}/{persona}/{dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        sampling=h4_sampling_settings,
        steer=h4_steer_settings,
    script:
        "../workflow_scripts/rules/h4_steer.py"


rule h4_ablate:
    input:
        unpack(h4_ablate_inputs),
        model=persona_model_dir,
        adapter=EM_ADAPTER,
        questions=QUESTIONS_FILE,
    output:
        samples=H4_ABLATE_SAMPLES,
    log:
        "logs/h4_ablate/{model}/{persona}/{dataset}/s{seed}.log",
    benchmark:
        "logs/benchmarks/h4_ablate/{model}/{persona}/{dataset}/s{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        sampling=h4_sampling_settings,
        ablate=h4_ablate_settings,
    script:
        "../workflow_scripts/rules/h4_ablate.py"


rule h4_judge:
    input:
        unpack(judge_inputs),
        samples=H4_SAMPLES,
        questions=QUESTIONS_FILE,
    output:
        judged=H4_JUDGED,
        summary=H4_JUDGE_SUMMARY,
    log:
        "logs/h4_judge/{model}/{h4run}.log",
        server="logs/h4_judge/{model}/{h4run}.server.log",
    benchmark:
        "logs/benchmarks/h4_judge/{model}/{h4run}.tsv"
    wildcard_constraints:
        h4run=r"(steer|ablate)/[^.]+",
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
        dataset=h4_judged_dataset,
    script:
        "../workflow_scripts/rules/h4_judge.py"


rule h4_analysis:
    input:
        unpack(h4_analysis_inputs),
    output:
        **h4_table_outputs(),
        geometry_figure=H4_FIGURE.format(name="h4_geometry"),
        steering_figure=H4_FIGURE.format(name="h4_steering"),
    log:
        "logs/h4_analysis.log",
    benchmark:
        "logs/benchmarks/h4_analysis.tsv"
    conda:
        "../envs/analysis.yaml"
    threads: 1
    resources:
        mem_mb=8_000,
        runtime=minutes(30),
    params:
        settings=h4_test_settings,
        order=h4_analysis_keys,
        layer=config["h4"]["layer"],
        dpi=config["statistics"]["figure_dpi"],
    script:
        "../workflow_scripts/rules/h4_analysis.py"
