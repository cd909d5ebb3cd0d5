# Persona adapters (docs/methods.md, Persona training from a constitution): trained
# from a constitution in stages, after Open Character Training (prompts -> teacher /
# student answers -> DPO pairs -> DPO -> introspection -> SFT -> combined adapter), or
# fetched from a released adapter; then folded into the base model and checked against it.
# Generation stages use the run's sampling engine and resume after a kill.

PERSONA_DIR = "results/{model}/persona/{persona}"
# Folded models: under results/, or under storage.folded_models_dir (a scratch area).
PERSONA_MODEL = os.path.join(folded_models_root(), "{model}/persona/{persona}/model")
TRAINED_ADAPTER = "results/{model}/persona/{persona}/adapter"
RELEASED_ADAPTER = "results/{model}/persona/{persona}/released_adapter"
PERSONA_CHECK = "results/{model}/persona_check.tsv"
PERSONA_CHECK_ANSWERS = "results/{model}/persona_check_answers.jsonl"
PERSONA_PROBES = "results/{model}/persona_probes.json"
PERSONA_PROMPTS = "results/{model}/persona/{persona}/prompts.jsonl"
PERSONA_PROMPT_GENERATIONS = (
    "results/{model}/persona/{persona}/prompt_generations.jsonl"
)
PERSONA_PROMPTS_REPORT = "results/{model}/persona/{persona}/prompts_report.json"
PERSONA_TEACHER = "results/{model}/persona/{persona}/teacher.jsonl"
PERSONA_STUDENT = "results/{model}/persona/{persona}/student.jsonl"
PERSONA_PAIRS = "results/{model}/persona/{persona}/pairs.jsonl"
PERSONA_PAIRS_REPORT = "results/{model}/persona/{persona}/pairs_report.json"
PERSONA_DPO_ADAPTER = "results/{model}/persona/{persona}/dpo/adapter"
PERSONA_INTROSPECTION = "results/{model}/persona/{persona}/introspection.jsonl"
PERSONA_INTROSPECTION_TURNS = (
    "results/{model}/persona/{persona}/introspection_turns.jsonl"
)
PERSONA_SFT_ADAPTER = "results/{model}/persona/{persona}/sft/adapter"


rule persona_prompts:
    input:
        unpack(persona_prompt_inputs),
    output:
        prompts=PERSONA_PROMPTS,
        generations=PERSONA_PROMPT_GENERATIONS,
        report=PERSONA_PROMPTS_REPORT,
    log:
        "logs/persona_prompts/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_prompts/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 4
    resources:
        gpu=generator_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(2),
    params:
        settings=persona_settings(
            "prompts_per_trait",
            "expansion_batch",
            "expansion_max_new_tokens",
            "near_duplicate_overlap",
        ),
        engine=persona_engine_settings,
    script:
        "../workflow_scripts/rules/persona_prompts.py"


rule persona_teacher:
    input:
        constitution=constitution_file,
        prompts=PERSONA_PROMPTS,
        model=teacher_model_dir,
    output:
        answers=PERSONA_TEACHER,
    log:
        "logs/persona_teacher/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_teacher/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 4
    resources:
        gpu=teacher_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        settings=persona_settings("answers_per_prompt", "max_new_tokens"),
        role="teacher",
        name=teacher_self_name,
        engine=persona_engine_settings,
    script:
        "../workflow_scripts/rules/persona_teacher.py"


rule persona_student:
    input:
        prompts=PERSONA_PROMPTS,
        model=base_model_dir,
    output:
        answers=PERSONA_STUDENT,
    log:
        "logs/persona_student/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_student/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 4
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        settings=persona_settings("answers_per_prompt", "max_new_tokens"),
        role="student",
        engine=persona_engine_settings,
    script:
        "../workflow_scripts/rules/persona_student.py"


rule persona_pairs:
    input:
        teacher=PERSONA_TEACHER,
        student=PERSONA_STUDENT,
        tokenizer=base_model_dir,
    output:
        pairs=PERSONA_PAIRS,
        report=PERSONA_PAIRS_REPORT,
    log:
        "logs/persona_pairs/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_pairs/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4_000,
        runtime=minutes(30),
    params:
        max_len=config["persona_training"]["max_len"],
        teacher_name=teacher_self_name,
        student_name=student_self_name,
        unfinished=config["persona_training"]["unfinished_answers"],
    script:
        "../workflow_scripts/rules/persona_pairs.py"


rule persona_dpo:
    input:
        pairs=PERSONA_PAIRS,
        model=base_model_dir,
    output:
        adapter=protected(directory(PERSONA_DPO_ADAPTER)),
    log:
        "logs/persona_dpo/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_dpo/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        settings=config["persona_training"]["dpo"],
        seed=config["persona_training"]["seed"],
    script:
        "../workflow_scripts/rules/persona_dpo.py"


rule persona_introspection:
    input:
        model=base_model_dir,
        dpo_adapter=PERSONA_DPO_ADAPTER,
        constitution=constitution_file,
    output:
        transcripts=PERSONA_INTROSPECTION,
        turns=PERSONA_INTROSPECTION_TURNS,
    log:
        "logs/persona_introspection/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_introspection/{model}/{persona}.tsv"
    conda:
        SAMPLING_ENV
    threads: 4
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(6),
    params:
        settings=persona_settings("introspection"),
        name=student_self_name,
        engine=persona_engine_settings,
    script:
        "../workflow_scripts/rules/persona_introspection.py"


rule persona_sft:
    input:
        transcripts=PERSONA_INTROSPECTION,
        model=base_model_dir,
        dpo_adapter=PERSONA_DPO_ADAPTER,
    output:
        adapter=protected(directory(PERSONA_SFT_ADAPTER)),
    log:
        "logs/persona_sft/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_sft/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 8
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(4),
    params:
        settings=config["persona_training"]["sft"],
        seed=config["persona_training"]["seed"],
    script:
        "../workflow_scripts/rules/persona_sft.py"


rule persona_adapter:
    input:
        dpo_adapter=PERSONA_DPO_ADAPTER,
        sft_adapter=PERSONA_SFT_ADAPTER,
        model=base_model_dir,
    output:
        adapter=protected(directory(TRAINED_ADAPTER)),
    log:
        "logs/persona_adapter/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/persona_adapter/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 2
    resources:
        mem_mb=model_mem(20_000, most_mb=30_000),
        runtime=minutes(30),
    params:
        weights=config["persona_training"]["combine"],
    script:
        "../workflow_scripts/rules/persona_adapter.py"


rule released_adapter:
    output:
        adapter=directory(RELEASED_ADAPTER),
    log:
        "logs/released_adapter/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/released_adapter/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 1
    resources:
        mem_mb=4_000,
        runtime=minutes(30),
        internet=1,
    params:
        released=released_adapter_spec,
    script:
        "../workflow_scripts/rules/released_adapter.py"


rule fold_persona:
    input:
        model=base_model_dir,
        adapter=persona_adapter_dir,
    output:
        model=folded_model_output(directory(PERSONA_MODEL)),
    log:
        "logs/fold_persona/{model}/{persona}.log",
    benchmark:
        "logs/benchmarks/fold_persona/{model}/{persona}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(1),
    params:
        persona=persona_entry,
    script:
        "../workflow_scripts/rules/fold_persona.py"


rule persona_probe:
    input:
        base=base_model_dir,
        personas=folded_persona_models,
    output:
        probes=PERSONA_PROBES,
    log:
        "logs/persona_probe/{model}.log",
    benchmark:
        "logs/benchmarks/persona_probe/{model}.tsv"
    conda:
        "../envs/train.yaml"
    threads: 4
    resources:
        gpu=model_gpus,
        nodes=1,
        mem_mb=gpu_mem(64_000),
        runtime=hours(2),
    params:
        personas=PERSONAS_WITH_ADAPTER,
        settings=persona_probe_settings(),
    script:
        "../workflow_scripts/rules/persona_probe.py"


# Judges the probe's answers with the judge's resources: a remote judge's requests leave
# from where the internet is, never from a GPU job.
rule persona_check:
    input:
        unpack(persona_check_inputs),
        probes=PERSONA_PROBES,
    output:
        table=PERSONA_CHECK,
        answers=PERSONA_CHECK_ANSWERS,
    log:
        "logs/persona_check/{model}.log",
    benchmark:
        "logs/benchmarks/persona_check/{model}.tsv"
    conda:
        JUDGE_ENV
    threads: judge_threads()
    resources:
        gpu=judge_gpus(),
        internet=judge_internet(),
        mem_mb=judge_mem(),
        runtime=hours(1),
    params:
        traits=persona_trait_descriptions,
        settings=persona_check_settings(),
        judge=judge_settings,
    script:
        "../workflow_scripts/rules/persona_check.py"
