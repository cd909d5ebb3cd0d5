# Evaluation questions and sampling: one engine load per model x persona; the
# persona's EM adapters (and the no-EM control) share it (docs/methods.md, Sampling).

QUESTIONS_FILE = "results/eval/questions.json"
SAMPLES = "results/{model}/samples/{persona}.parquet"


rule eval_questions:
    input:
        questions_source_inputs,
    output:
        questions=QUESTIONS_FILE,
    log:
        "logs/eval_questions.log",
    benchmark:
        "logs/benchmarks/eval_questions.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=2_000,
        runtime=minutes(15),
        internet=1,
    params:
        questions=config["questions"],
    script:
        "../workflow_scripts/rules/eval_questions.py"


rule sample_persona:
    input:
        model=persona_model_dir,
        adapters=em_adapters_of_persona,
        questions=QUESTIONS_FILE,
    output:
        samples=SAMPLES,
    log:
        "logs/sample_persona/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/sample_persona/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        sampling=sampling_settings,
        conditions=sampling_conditions,
    script:
        "../workflow_scripts/rules/sample_persona.py"
