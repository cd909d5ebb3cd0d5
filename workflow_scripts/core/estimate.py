"""What a config's run will cost before it starts: jobs per rule, GPU-hours per stage
from the throughputs measured in benchmarks/ (benchmarks/throughput.yaml), peak
storage per stage, and the judge's API requests and cost (workflow_scripts.judging.estimate).

    python -m workflow_scripts.core.estimate --configfile config/config.yaml [--gpu a100_64gb]

Sends nothing and loads no model. Job counts come from the grid (core/grid.py), the
way the Snakefile expands it; GPU-hours and storage are estimates whose assumptions
are printed beside them. Stages whose speed was never measured say so (no number).
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workflow_scripts.core.grid import Grid
from workflow_scripts.core.io_utils import InputError, read_json, read_yaml

REPO = Path(__file__).resolve().parents[2]
THROUGHPUT = REPO / "benchmarks" / "throughput.yaml"
GB = 1e9
CHARS_PER_TOKEN = 4
NOMINAL_QUESTIONS = 8
# Bytes per LoRA parameter: PEFT keeps adapter weights in float32; a Trainer
# checkpoint adds AdamW's two float32 moments.
ADAPTER_BYTES = 4
FULL_CHECKPOINT_BYTES = 4 + 2 * 4
ANALYSIS_BYTES = {"bfloat16": 2, "float16": 2, "float32": 4}
# Persona training stages (docs/methods.md): GPU rules and CPU rules, one job each per
# model x constitution persona.
PERSONA_GPU_RULES = (
    "persona_prompts",
    "persona_teacher",
    "persona_student",
    "persona_dpo",
    "persona_introspection",
    "persona_sft",
)
PERSONA_CPU_RULES = ("persona_pairs", "persona_adapter")
RELEASED_LORA_RANK = 64  # rank of the released persona adapters when their files are not here


@dataclass(frozen=True)
class ModelShape:
    params: int
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int

    @property
    def kv_dim(self) -> int:
        return self.hidden // self.heads * self.kv_heads

    def module_dims(self) -> dict[str, tuple[int, int]]:
        """(in, out) features of each linear layer a LoRA can target."""
        h, i, kv = self.hidden, self.intermediate, self.kv_dim
        return {
            "q_proj": (h, h),
            "k_proj": (h, kv),
            "v_proj": (h, kv),
            "o_proj": (h, h),
            "gate_proj": (h, i),
            "up_proj": (h, i),
            "down_proj": (i, h),
        }

    def lora_params(self, rank: int, targets: Sequence[str]) -> int:
        dims = self.module_dims()
        unknown = [t for t in targets if t not in dims]
        if unknown:
            raise InputError(
                f"target_modules: {unknown} not among {sorted(dims)} (the estimate's known layers)"
            )
        return self.layers * sum(rank * (dims[t][0] + dims[t][1]) for t in targets)


@dataclass
class Stage:
    stage: str
    jobs: int
    gpu_hours: float | None  # None: not measured
    storage_gb: float  # peak
    note: str = ""
    on_results: bool = True  # False: on another file system (not counted against the quota)
    answers: int = 0  # answers the stage's jobs decode (to be judged), where counted


def model_shape(name: str, entry: dict, table: dict, results: Path) -> ModelShape:
    """The base model's own config.json once it exists, else the table's entry."""
    config_json = results / name / "base" / "model" / "config.json"
    if config_json.exists():
        c = read_json(config_json)
        shape = {
            "hidden": c["hidden_size"],
            "intermediate": c["intermediate_size"],
            "layers": c["num_hidden_layers"],
            "heads": c["num_attention_heads"],
            "kv_heads": c.get("num_key_value_heads", c["num_attention_heads"]),
        }
        return ModelShape(params=_dense_params(c, shape), **shape)
    keys = {entry.get("hf_id"), name, entry.get("gguf_file"), Path(entry.get("path") or "").name}
    for hf_id, known in table["model_shapes"].items():
        if hf_id in keys or keys & set(known.get("aliases", [])):
            return ModelShape(**{k: v for k, v in known.items() if k != "aliases"})
    raise InputError(
        f"models.{name}: no architecture known for the estimate; add its shape under "
        f"model_shapes in {THROUGHPUT.relative_to(REPO)} (or build the base model first)"
    )


def _dense_params(c: dict, s: dict) -> int:
    vocab = c["vocab_size"]
    kv = s["hidden"] // s["heads"] * s["kv_heads"]
    per_layer = (
        s["hidden"] * (2 * s["hidden"] + 2 * kv)
        + 3 * s["hidden"] * s["intermediate"]
        + 2 * s["hidden"]
    )
    embeddings = vocab * s["hidden"] * (1 if c.get("tie_word_embeddings") else 2)
    return s["layers"] * per_layer + embeddings + s["hidden"]


def job_counts(config: dict) -> dict[str, int]:
    """Jobs of the rules whose count grows with the grid (what the Snakefile expands)."""
    grid = Grid.from_config(config)
    sources = {p: config["personas"][p]["source"] for p in grid.personas}
    with_adapter = [p for p in grid.personas if sources[p] != "none"]
    constitution = [p for p in grid.personas if sources[p] == "constitution"]
    released = [p for p in grid.personas if sources[p] == "released"]
    m = len(grid.models)
    counts = {
        "base_model": len(config["models"]),
        "released_adapter": m * len(released),
        **{rule: m * len(constitution) for rule in PERSONA_GPU_RULES + PERSONA_CPU_RULES},
        "fold_persona": m * len(with_adapter),
        "persona_probe": m if with_adapter else 0,
        "persona_check": m if with_adapter else 0,
        "em_dataset": len(grid.datasets),
        "em_sft": m * len(grid.personas) * len(grid.em_conditions()),
        "sample_persona": m * len(grid.personas),
        "judge": len(grid.judged_cells()),
        **h4_job_counts(config),
        "judge_secondary": len(grid.judged_cells()) * len((config.get("judges") or {}).get("secondary") or {}),
        "self_knowledge_score": m * len(grid.personas) if self_knowledge_on(config) else 0,
    }
    counts |= h3_job_counts(config, grid)
    return {rule: n for rule, n in counts.items() if n}


def question_count(config: dict) -> int:
    """Evaluation questions of a config (the configured ids, else the nominal count)."""
    return len((config.get("questions") or {}).get("ids") or []) or NOMINAL_QUESTIONS


def h4_job_counts(config: dict) -> dict[str, int]:
    from workflow_scripts.h4.estimate import h4_counts

    counts = h4_counts(config, NOMINAL_QUESTIONS)  # job counts do not depend on questions
    return {
        "h4_activations": counts["activation_jobs"],
        "h4_steer": counts["steer_jobs"],
        "h4_ablate": counts["ablate_jobs"],
    }


def self_knowledge_on(config: dict) -> bool:
    first_study = config.get("first_study") or {}
    importing = bool(first_study.get("archive") or first_study.get("directory"))
    return bool((config.get("self_knowledge") or {}).get("enabled")) and not importing


def h3_on(config: dict) -> bool:
    first_study = config.get("first_study") or {}
    importing = bool(first_study.get("archive") or first_study.get("directory"))
    return bool((config.get("h3") or {}).get("enabled")) and not importing


def h3_job_counts(config: dict, grid: Grid) -> dict[str, int]:
    """Jobs of the H3 rules (rules/h3.smk): per persona, per persona x EM dataset, per EM run."""
    if not h3_on(config):
        return {}
    m, personas = len(grid.models), len(grid.personas)
    em = [d for d in grid.datasets if config["datasets"][d]["role"] == "em"]
    return {
        "h3_sample": m * personas if em else 0,
        "h3_judge": m * personas * len(em),
        "h3_mechanistic": m * personas * len(em) * len(grid.seeds),
        "h3_analysis": 1 if em else 0,
    }


def h3_answers_per_persona(config: dict, grid: Grid, checkpoints: dict[str, int], n_questions: int) -> int:
    """Answers one h3_sample job decodes: every selected checkpoint of the persona's EM
    runs (`checkpoints`: analysis checkpoints a run of each dataset keeps) x questions x n."""
    h3 = config["h3"]
    questions = len(h3.get("questions") or []) or n_questions
    stride = int(h3.get("checkpoint_stride", 1))
    em = [d for d in grid.datasets if config["datasets"][d]["role"] == "em"]
    # every stride-th checkpoint, always with the final one
    selected = {d: -(-checkpoints[d] // stride) + (1 if (checkpoints[d] - 1) % stride else 0) for d in em}
    return sum(selected[d] for d in em) * len(grid.seeds) * questions * int(h3["n"])


def em_rows(config: dict, dataset: str, table: dict, results: Path) -> tuple[int, int, bool]:
    """(rows, tokens, counted) of one EM dataset: counted from its prepared file (or its
    local source), else the table's nominal size."""
    path = results / "datasets" / f"{dataset}.jsonl"
    source = config["datasets"][dataset].get("source", {})
    if not path.exists() and source.get("type") == "local":
        path = Path(source["path"])
    if path.exists():
        text = path.read_text(encoding="utf-8")
        rows = sum(1 for line in text.splitlines() if line.strip())
        return rows, len(text) // CHARS_PER_TOKEN, True
    em = table["em_sft"]
    return em["nominal_rows"], em["nominal_rows"] * em["nominal_tokens_per_row"], False


def em_steps(rows: int, epochs: float, global_batch: int, max_steps: int = -1) -> int:
    if max_steps > 0:
        return max_steps
    return math.ceil(math.ceil(rows / global_batch) * epochs)


def analysis_plan(em: dict, steps: int) -> tuple[int, int, bool]:
    """(checkpoints kept per run, bytes per LoRA parameter each, resume checkpoint deleted at the end).

    With `em_training.analysis_checkpoints` (an int stride in steps, a list of steps, or a
    mapping with `every`/`stride`/`every_steps` and optionally `dtype`): adapter-only checkpoints
    every stride steps plus one full checkpoint for resume, deleted when the run
    completes. Without it (fallback): every `save_steps` checkpoint is a Trainer
    checkpoint with optimizer state, and all of them are kept.
    """
    plan = em.get("analysis_checkpoints")
    if plan is None or plan is False:
        return steps // int(em["save_steps"]), FULL_CHECKPOINT_BYTES, False
    if isinstance(plan, dict) and set(plan) <= {"every", "log_spaced"}:  # the schema's form
        from workflow_scripts.em.training import analysis_steps

        if not (int(plan.get("every", 0)) > 0 or int(plan.get("log_spaced", 0)) > 0):
            return steps // int(em["save_steps"]), FULL_CHECKPOINT_BYTES, False
        return len(analysis_steps(plan, steps)), ANALYSIS_BYTES["bfloat16"], True
    dtype = "bfloat16"
    if isinstance(plan, list):  # explicit steps
        return sum(1 for step in plan if int(step) <= steps), ANALYSIS_BYTES[dtype], True
    if isinstance(plan, dict):
        stride = next(
            (plan[k] for k in ("every", "stride", "every_steps", "steps") if k in plan),
            em["save_steps"],
        )
        dtype = plan.get("dtype", dtype)
    else:
        stride = plan
    if not stride or int(stride) <= 0:
        return 0, ANALYSIS_BYTES[dtype], True
    return steps // int(stride), ANALYSIS_BYTES[dtype], True


def em_tokens_per_s(table: dict, gpu: str, batching: str, params: int) -> float:
    """Training tokens/s of a model on a GPU: the measured MFU of the batching mode,
    at that GPU's peak (MFU = 4 x params x tokens/s / peak)."""
    row = table["em_sft"]["by_batching"][batching]
    return row["mfu"] * table["gpus"][gpu]["peak_bf16_tflops"] * 1e12 / (4 * params)


def decode_tokens_per_s(table: dict, gpu: str, params: int, lora: bool) -> float:
    """Decode tokens/s of the transformers engine's GPU path: bandwidth-bound, so scaled
    by memory bandwidth and by the weights read per step."""
    s = table["sampling"]
    measured = s["lora" if lora else "control"]["tokens_per_s"]
    bandwidth = (
        table["gpus"][gpu]["memory_bandwidth_tbps"]
        / table["gpus"][s["gpu"]]["memory_bandwidth_tbps"]
    )
    return measured * bandwidth * s["params"] / params


def estimate_stages(
    config: dict, table: dict, gpu: str, results: Path, concurrent_gpu_jobs: int
) -> list[Stage]:
    if gpu not in table["gpus"]:
        raise InputError(
            f"--gpu {gpu}: not in {THROUGHPUT.relative_to(REPO)} (known: {', '.join(table['gpus'])})"
        )
    grid = Grid.from_config(config)
    counts = job_counts(config)
    em, sampling = config["em_training"], config.get("sampling", {})
    shapes = {m: model_shape(m, config["models"][m], table, results) for m in config["models"]}
    models = list(grid.models)
    weights_gb = {m: shapes[m].params * 2 / GB for m in shapes}  # bf16
    # GPUs a job of each model holds (models.<m>.gpus). Throughput-bound work (training
    # FLOPs, decoding's weight reads) costs the same GPU-hours over g GPUs of one node,
    # each doing 1/g of it; a model load or save holds all g GPUs for its whole time.
    gpus = {m: int(config["models"][m].get("gpus", 1) or 1) for m in shapes}
    stages: list[Stage] = []

    base_gb = sum(weights_gb.values())
    stages.append(
        Stage(
            "base_model",
            counts.get("base_model", 0),
            0.0,
            base_gb,
            "download or conversion, no GPU",
        )
    )

    released = [p for p in grid.personas if config["personas"][p]["source"] == "released"]
    persona_lora_gb = sum(
        shapes[m].lora_params(RELEASED_LORA_RANK, list(shapes[m].module_dims()))
        * ADAPTER_BYTES
        / GB
        for m in models
    )
    stages.append(
        Stage(
            "released_adapter",
            counts.get("released_adapter", 0),
            0.0,
            persona_lora_gb * len(released),
            f"download; rank {RELEASED_LORA_RANK} on all linear layers assumed",
        )
    )
    if counts.get("persona_dpo"):
        per_model = sum(counts[r] for r in PERSONA_GPU_RULES + PERSONA_CPU_RULES) // len(models)
        constitution = counts["persona_dpo"] // len(models)
        stages.append(
            Stage(
                "persona_training",
                per_model * len(models),
                None,
                persona_lora_gb * constitution * 3,
                "generation, DPO, introspection, SFT: speed not measured",
            )
        )

    folds = counts.get("fold_persona", 0)
    per_fold = {m: weights_gb[m] for m in models}
    s = table["sampling"]
    fold_hours = (
        sum(per_fold[m] * (s["load_s_per_gb"] + s["save_s_per_gb"]) * gpus[m] for m in models)
        / 3600
        * (folds / len(models) if models else 0)
    )
    storage = config.get("storage", {})
    temporary = storage.get("temporary_folded_models", False)
    elsewhere = storage.get("folded_models_dir")
    fold_note = "params x 2 bytes each; " + (
        "temporary: deleted once EM and sampling are done (peak if all coexist)"
        if temporary
        else "kept"
    )
    if elsewhere:
        fold_note += f"; under {elsewhere}, not counted against the quota"
    stages.append(
        Stage(
            "fold_persona",
            folds,
            fold_hours,
            sum(per_fold.values()) * folds / max(len(models), 1),
            fold_note,
            on_results=not elsewhere,
        )
    )
    if counts.get("persona_probe"):
        stages.append(
            Stage("persona_probe", counts["persona_probe"], None, 0.0, "speed not measured")
        )
    if counts.get("self_knowledge_score"):
        stages.append(
            Stage(
                "self_knowledge",
                counts["self_knowledge_score"],
                None,
                0.0,
                "scoring passes on the GPU (no sampling, no judge): speed not measured",
            )
        )

    # EM SFT
    global_batch = int(em["per_device_batch"]) * int(em["grad_accum"])
    batching = em.get("batching", "padded")
    em_hours = em_gb = resume_gb = 0.0
    kept_per_run: list[int] = []
    kept_by_dataset: dict[str, int] = {}
    analysis_on = False
    exact = True
    for d in grid.datasets:
        rows, tokens, counted = em_rows(config, d, table, results)
        exact &= counted
        steps = em_steps(rows, float(em["epochs"]), global_batch, int(em.get("max_steps", -1)))
        kept, bytes_each, resume_deleted = analysis_plan(em, steps)
        kept_per_run.append(kept)
        kept_by_dataset[d] = kept
        analysis_on |= resume_deleted
        for m in models:
            lora = shapes[m].lora_params(int(em["lora_r"]), em["target_modules"])
            runs = len(grid.personas) * len(grid.seeds)
            em_hours += (
                runs
                * tokens
                * float(em["epochs"])
                / em_tokens_per_s(table, gpu, batching, shapes[m].params)
                / 3600
            )
            em_gb += runs * lora * (ADAPTER_BYTES + kept * bytes_each) / GB
            if resume_deleted:
                resume_gb = max(resume_gb, lora * FULL_CHECKPOINT_BYTES / GB)
    em_gb += resume_gb * concurrent_gpu_jobs
    mode = (
        "adapter-only analysis checkpoints + one resume checkpoint per running job"
        if analysis_on
        else "every save_steps checkpoint kept with optimizer state"
    )
    stages.append(
        Stage(
            "em_sft",
            counts.get("em_sft", 0),
            em_hours,
            em_gb,
            f"{batching} batching, {'counted' if exact else 'nominal'} rows; "
            f"{max(kept_per_run, default=0)} checkpoints a run at most ({mode})",
        )
    )

    # Sampling: every condition of a persona decodes questions x n answers to max_new_tokens.
    questions = question_count(config)
    answers = questions * int(sampling.get("n", 50))
    new_tokens = int(sampling.get("max_new_tokens", 600))
    sample_hours = 0.0
    for m in models:
        params = shapes[m].params
        per_persona = (
            (
                answers * new_tokens / decode_tokens_per_s(table, gpu, params, lora=False)
                if grid.controls
                else 0
            )
            + len(grid.em_conditions())
            * answers
            * new_tokens
            / decode_tokens_per_s(table, gpu, params, lora=True)
            + weights_gb[m] * s["load_s_per_gb"] * gpus[m]
        )
        sample_hours += per_persona * len(grid.personas) / 3600
    stages.append(
        Stage(
            "sample_persona",
            counts.get("sample_persona", 0),
            sample_hours,
            0.0,
            f"transformers engine GPU path, {answers} answers x {new_tokens} tokens a condition",
        )
    )
    if h3_on(config):
        per_persona_answers = h3_answers_per_persona(config, grid, kept_by_dataset, questions)
        h3_hours = sum(
            per_persona_answers * new_tokens / decode_tokens_per_s(table, gpu, shapes[m].params, lora=True)
            + weights_gb[m] * s["load_s_per_gb"]
            for m in models
        ) * len(grid.personas) / 3600
        h3_counts = h3_job_counts(config, grid)
        stages.append(
            Stage(
                "h3_sample",
                h3_counts["h3_sample"],
                h3_hours,
                0.0,
                f"{per_persona_answers} answers x {new_tokens} tokens a persona (every checkpoint served as a LoRA)",
                answers=per_persona_answers * len(grid.personas) * len(models),
            )
        )
    judge_gpu = config["judge"]["kind"] != "openai"
    stages.append(
        Stage(
            "judge",
            counts.get("judge", 0),
            None if judge_gpu else 0.0,
            0.0,
            "local judge on a GPU: speed not measured" if judge_gpu else "API requests: below",
        )
    )
    stages.extend(h4_stages(config, table, gpu, shapes, gpus, questions))
    return stages


def h4_stages(
    config: dict,
    table: dict,
    gpu: str,
    shapes: dict[str, ModelShape],
    gpus: dict[str, int],
    questions: int,
) -> list[Stage]:
    """H4 (workflow_scripts/h4): extraction reads each direction's judged answers once
    (compute-bound, the measured extraction rate scaled by peak and size); steering and
    ablation decode their answers with the transformers engine (the hooks cost within
    the measured spread of the sampling rate). Upper bounds: every direction extracted."""
    from workflow_scripts.h4.estimate import h4_counts

    counts = h4_counts(config, questions)
    if not counts["answers"]:
        return []
    h4 = table["h4"]
    new_tokens = int(config.get("sampling", {}).get("max_new_tokens", 600))
    grid = Grid.from_config(config)
    models = list(grid.models)
    # answers and extraction reads split evenly over the models (the grid is a product)
    steer_share = counts["steer_answers"] / len(models)
    ablate_share = counts["ablate_answers"] / len(models)
    read_share = counts["extraction_answers"] / len(models)
    jobs = counts["activation_jobs"] + counts["steer_jobs"] + counts["ablate_jobs"]
    hours = 0.0
    for m in models:
        params = shapes[m].params
        extract_rate = (
            h4["extraction_tokens_per_s"]
            * table["gpus"][gpu]["peak_bf16_tflops"]
            / table["gpus"][h4["gpu"]]["peak_bf16_tflops"]
            * h4["params"]
            / params
        )
        hours += (
            read_share * h4["tokens_per_answer"] / extract_rate
            + steer_share * new_tokens / decode_tokens_per_s(table, gpu, params, lora=False)
            + ablate_share * new_tokens / decode_tokens_per_s(table, gpu, params, lora=True)
        ) / 3600
        load_s = shapes[m].params * 2 / GB * table["sampling"]["load_s_per_gb"]
        hours += jobs / len(models) * load_s * gpus[m] / 3600
    return [
        Stage(
            "h4",
            jobs,
            hours,
            0.0,
            f"{counts['answers']} steered/ablated answers, {counts['judge_requests']} judge requests (upper bound)",
        )
    ]


def h3_judge_estimate(config: dict, stages: list[Stage], main_total: dict) -> dict | None:
    """Requests and cost of judging the H3 answers (two requests an answer, none cached),
    priced at the main grid's cost per request (the same answer length bound)."""
    if not h3_on(config):
        return None
    sample = next((s for s in stages if s.stage == "h3_sample"), None)
    if sample is None:
        return None
    requests = 2 * sample.answers
    sent = max(int(main_total["to_send"]), 1)
    return {
        "requests": requests,
        "cost_usd": round(requests * main_total["cost_usd"] / sent, 2),
        "max_cost_usd": round(requests * main_total["max_cost_usd"] / sent, 2),
    }


def storage_advice(total_gb: float, quota_gb: float) -> str:
    if total_gb <= quota_gb:
        return f"fits the {quota_gb:.0f} GB quota ({total_gb:.0f} GB peak)"
    ask = math.ceil(total_gb * 1.2 / 100) * 100  # 20% headroom for logs, samples and caches
    return f"exceeds the {quota_gb:.0f} GB quota: ask for {ask} GB on $WORK (peak {total_gb:.0f} GB + 20%)"


def load_table(path: Path = THROUGHPUT) -> dict[str, Any]:
    return read_yaml(path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configfile", nargs="+", default=[str(REPO / "config" / "offline.yaml")])
    parser.add_argument("--results", default="results")
    parser.add_argument(
        "--gpu",
        default="a100_64gb",
        help="GPU kind of benchmarks/throughput.yaml (Leonardo: a100_64gb)",
    )
    parser.add_argument(
        "--quota-gb", type=float, default=1000, help="project quota on the results file system"
    )
    parser.add_argument(
        "--concurrent-gpu-jobs",
        type=int,
        default=16,
        help="EM runs at once (each holds one resume checkpoint while it runs)",
    )
    parser.add_argument(
        "--no-judge", action="store_true", help="skip the judge's request and cost estimate"
    )
    args = parser.parse_args(argv)
    from workflow_scripts.judging.estimate import load_config

    config = load_config(args.configfile)
    results = Path(args.results)
    stages = estimate_stages(config, load_table(), args.gpu, results, args.concurrent_gpu_jobs)
    print(f"jobs per rule (grid-sized rules): {job_counts(config)}")
    print(f"{'stage':<18}{'jobs':>6}{'GPU-h':>10}{'storage GB':>12}  note")
    for s in stages:
        hours = "n/a" if s.gpu_hours is None else f"{s.gpu_hours:.1f}"
        print(f"{s.stage:<18}{s.jobs:>6}{hours:>10}{s.storage_gb:>12.1f}  {s.note}")
    measured = sum(s.gpu_hours or 0 for s in stages)
    unmeasured = [s.stage for s in stages if s.gpu_hours is None]
    total_gb = sum(s.storage_gb for s in stages if s.on_results)
    print(
        f"GPU-hours ({args.gpu}): {measured:.0f}"
        + (f" plus the unmeasured {', '.join(unmeasured)}" if unmeasured else "")
    )
    print(f"storage: {storage_advice(total_gb, args.quota_gb)}")
    if not args.no_judge:
        from workflow_scripts.judging.estimate import estimate_judges, secondary_line, totals

        judges = estimate_judges(config, results)
        total = totals(judges["judge"])
        print(
            f"judge: {config['judge']['kind']} {config['judge']['model']}: {total['to_send']} requests "
            f"({total['cached']} cached), about {total['cost_usd']} USD, at most {total['max_cost_usd']} USD"
        )
        h4 = next((s for s in stages if s.stage == "h4"), None)
        if h4 is not None and total["judgements"]:
            from workflow_scripts.h4.estimate import h4_counts

            requests = h4_counts(config, question_count(config))["judge_requests"]
            per_request = total["cost_usd"] / total["judgements"]
            print(
                f"judge, H4 answers: {requests} requests more (upper bound), about "
                f"{requests * per_request:.1f} USD at the main requests' mean cost"
            )
        for name, cells in judges.items():
            if name != "judge":
                print(secondary_line(name, config, cells))
        if len(judges) > 1:
            every = totals([c for cells in judges.values() for c in cells])
            print(
                f"all judges: {every['to_send']} requests, about {every['cost_usd']} USD, "
                f"at most {every['max_cost_usd']} USD"
            )
        h3 = h3_judge_estimate(config, stages, total)
        if h3:
            print(
                f"judge, H3: {h3['requests']} requests, about {h3['cost_usd']} USD, at most "
                f"{h3['max_cost_usd']} USD (at the main grid's cost per request)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
