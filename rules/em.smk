# EM datasets (fetched, decrypted, checksummed, validated) and EM fine-tuning of
# each persona model (docs/methods.md, EM fine-tuning). Training starts from the folded persona
# model (the base model for the baseline persona), verified before the first step;
# checkpoints (EM_CHECKPOINTS) are kept and a rerun resumes from the last one.

DATASET_FILE = "results/datasets/{dataset}.jsonl"
EM_ADAPTER = "results/{model}/em/{persona}/{dataset}/s{seed}/adapter"
EM_CHECKPOINTS = "results/{model}/em/{persona}/{dataset}/s{seed}/checkpoints"
EM_ANALYSIS_CHECKPOINTS = (
    "results/{model}/em/{persona}/{dataset}/s{seed}/analysis_checkpoints"
)


rule em_dataset:
    input:
        dataset_source_inputs,
    output:
        data=DATASET_FILE,
        meta="results/datasets/{dataset}.meta.json",
    log:
        "logs/em_dataset/{dataset}.log",
    benchmark:
        "logs/benchmarks/em_dataset/{dataset}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4_000,
        runtime=minutes(30),
        internet=1,
    params:
        dataset=dataset_entry,
        archives=dataset_archives,
    script:
        "../workflow_scripts/rules/em_dataset.py"


rule em_sft:
    input:
        unpack(em_training_inputs),
        model=persona_model_dir,
    output:
        adapter=protected(directory(EM_ADAPTER)),
        analysis=protected(directory(EM_ANALYSIS_CHECKPOINTS)),
    log:
        "logs/em_sft/{model}/{persona}/{dataset}/s{seed}.log",
    benchmark:
        "logs/benchmarks/em_sft/{model}/{persona}/{dataset}/s{seed}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(3),
    params:
        train=em_settings,
        checkpoints=em_checkpoints_dir,
        has_persona_adapter=persona_has_adapter,
        kl_reference_name=kl_reference_name,
    script:
        "../workflow_scripts/rules/em_sft.py"
