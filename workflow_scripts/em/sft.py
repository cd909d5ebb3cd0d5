"""Rule em_sft: train one EM LoRA on the persona model (docs/methods.md, EM fine-tuning).

The start model is verified before training: for a persona other than the
baseline it must be a folded persona model whose composition.json lists that
persona's adapter and records a passed logit check against the base model, and
its weights must hash to what was checked. (Re-running the logit check would need
the base model in memory beside it; the weight hash proves the same thing, that
these are exactly the weights whose logits were shown to differ, at the cost of
reading them once.) The baseline starts from the base model itself, which must
carry no adapter.

Checkpoints go to a directory that is not a declared output: a killed job resumes
from the last one. With analysis checkpoints on (the default), adapter-only bf16
checkpoints are staged there too and moved into the rule's analysis_checkpoints output
at the end, and the trainer's resume checkpoint is deleted
(workflow_scripts/em/analysis_checkpoints.py); with them off, every trainer checkpoint
is kept as the phase-transition series.
"""

import json
import logging
from pathlib import Path
from typing import Any

from workflow_scripts.core.composition import (
    COMPOSITION_FILE,
    AdapterRef,
    Composition,
    CompositionError,
    composition_of,
    read_composition,
    require_difference,
    write_composition,
)
from workflow_scripts.core.hashing import settings_hash, sha256_file, weights_hash
from workflow_scripts.core.io_utils import (
    atomic_dir,
    check_safetensors,
    read_json,
    write_json_atomic,
)
from workflow_scripts.core.progress import Progress
from workflow_scripts.core.sharding import (
    barrier,
    gathered_adapter_state,
    is_main_process,
    load_on_rank_zero,
    world_size,
)
from workflow_scripts.em.analysis_checkpoints import (
    STAGING,
    analysis_callback,
    delete_resume_checkpoints,
    publish_analysis_checkpoints,
)
from workflow_scripts.em.batching import data_collator, prepare_model
from workflow_scripts.em.dataset import prompt_completion_rows, read_chat_rows
from workflow_scripts.em.training import (
    TRAINING_RECORD,
    EmTrainSettings,
    analysis_steps,
    kl_trainer_class,
    lora_config,
    sft_config,
    sft_trainer_class,
    tokenize_full_chats,
)

log = logging.getLogger(__name__)


FOLDED_HASH_CHECK = "folded_weights_sha256"


LOGIT_CHECK = "logit_divergence_vs_base"


def verify_start_model(model_dir: Path, persona: str, has_persona_adapter: bool) -> Composition:
    """The composition of the model EM training starts from, verified (see module doc)."""
    model_dir = Path(model_dir)
    composition_path = model_dir / COMPOSITION_FILE
    if not has_persona_adapter:
        composition = composition_of(model_dir)
        if composition.adapters:
            raise CompositionError(
                f"{composition_path}: persona '{persona}' has no adapter, so training must start "
                f"from the base model; this model carries {composition.summary()}"
            )
        return composition

    if not composition_path.exists():
        raise CompositionError(
            f"{composition_path}: missing; persona '{persona}' must start from its folded model "
            "(rule fold_persona), and this directory was not made by it"
        )
    composition = read_composition(model_dir)
    names = [a.name for a in composition.adapters if a.role == "persona"]
    if persona not in names:
        raise CompositionError(
            f"{composition_path}: adapters: expected the persona adapter '{persona}', found {names or 'none'}"
        )
    divergence = composition.checks.get(LOGIT_CHECK)
    if not divergence:
        raise CompositionError(
            f"{composition_path}: checks.{LOGIT_CHECK}: no logit check recorded at fold time"
        )
    require_difference(divergence, str(composition_path))
    recorded = composition.checks.get(FOLDED_HASH_CHECK)
    found = weights_hash(model_dir)
    if recorded != found:
        raise CompositionError(
            f"{composition_path}: checks.{FOLDED_HASH_CHECK}: the weights changed since the fold was "
            f"checked: expected {recorded}, found {found}"
        )
    return composition


def _versions() -> dict:
    import peft
    import torch
    import transformers
    import trl

    return {
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "peft": peft.__version__,
        "trl": trl.__version__,
    }


RUN_FINGERPRINT = "run_fingerprint.json"


def last_checkpoint(checkpoints_dir: Path) -> str | None:
    from transformers.trainer_utils import get_last_checkpoint

    if not Path(checkpoints_dir).is_dir():
        return None
    return get_last_checkpoint(str(checkpoints_dir))


def prepare_checkpoints_dir(checkpoints_dir: Path, fingerprint: dict) -> None:
    """Keep the checkpoints of THIS run (same settings, data and start model) and mark
    the directory with its fingerprint.

    Checkpoints of a run with other inputs (a changed config re-triggers the job) are
    moved aside to `<dir>.stale-<hash>`, never resumed and never deleted. In a sharded
    run only rank 0 calls this; the others wait for it (renaming the directory under a
    rank that is writing into it loses that rank's file).
    """
    checkpoints_dir = Path(checkpoints_dir)
    marker = checkpoints_dir / RUN_FINGERPRINT
    if checkpoints_dir.exists() and any(checkpoints_dir.iterdir()):
        previous = read_json(marker) if marker.exists() else None
        if previous != fingerprint:
            stale = checkpoints_dir.with_name(
                f"{checkpoints_dir.name}.stale-{settings_hash(previous)}"
            )
            log.warning(
                "checkpoints in %s belong to another run; moved to %s", checkpoints_dir, stale
            )
            checkpoints_dir.rename(stale)
    checkpoints_dir.mkdir(parents=True, exist_ok=True)
    if not (marker.exists() and read_json(marker) == fingerprint):
        write_json_atomic(marker, fingerprint)


def checkpoint_to_resume(checkpoints_dir: Path, fingerprint: dict) -> str | None:
    """The last checkpoint of THIS run, or None (see `prepare_checkpoints_dir`); every
    rank of a sharded run calls this and gets the same answer."""
    if is_main_process():
        prepare_checkpoints_dir(checkpoints_dir, fingerprint)
    barrier()
    return last_checkpoint(Path(checkpoints_dir))


def _load_for_training(model_dir: Path, settings: EmTrainSettings) -> tuple[Any, Any, bool]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    cuda = torch.cuda.is_available()
    dtype = torch.bfloat16 if cuda else torch.float32
    check_safetensors(model_dir)
    load_on_rank_zero()  # sharded: the other ranks get their shards from rank 0
    model = AutoModelForCausalLM.from_pretrained(
        model_dir, dtype=dtype, attn_implementation=settings.attn_implementation
    )
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer, cuda


def build_trainer(
    model: Any,
    tokenizer: Any,
    rows: list[dict],
    settings: EmTrainSettings,
    checkpoints_dir: Path,
    use_bf16: bool,
    kl_rows: list[dict] | None = None,
) -> Any:
    """The trl trainer of one run on chat rows: plain SFT, or SFT + KL for kind 'kl'."""
    from datasets import Dataset

    if settings.kind == "kl" and not kl_rows:
        raise ValueError("kind 'kl' needs the KL reference rows")
    kl_sequences = (
        tokenize_full_chats(tokenizer, kl_rows, settings.max_length)
        if settings.kind == "kl"
        else None
    )
    train = Dataset.from_list(prompt_completion_rows(rows))
    return trainer_for(model, tokenizer, train, settings, checkpoints_dir, use_bf16, kl_sequences)


def trainer_for(
    model: Any,
    tokenizer: Any,
    train_dataset: Any,
    settings: EmTrainSettings,
    checkpoints_dir: Path,
    use_bf16: bool,
    kl_sequences: list[list[int]] | None = None,
) -> Any:
    """The trainer on a prepared dataset (prompt/completion rows, or pre-tokenized rows
    with `input_ids` and `completion_mask`, as the GPU benchmark uses). The model's
    attention is switched to the one `settings.batching` needs."""
    prepare_model(model, settings.batching)
    pad_id = (
        tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    )
    common = {
        "model": model,
        "args": sft_config(settings, str(checkpoints_dir), use_bf16),
        "train_dataset": train_dataset,
        "processing_class": tokenizer,
        "peft_config": lora_config(settings),
        "data_collator": data_collator(settings.batching, pad_id),
        "length_grouping": settings.length_grouping,
    }
    if settings.kind == "sft":
        return sft_trainer_class()(**common)
    return kl_trainer_class()(
        **common,
        kl_sequences=kl_sequences,
        kl_weight=settings.kl_weight,
        kl_batch_size=settings.kl_batch_size or settings.per_device_batch,
        kl_seed=settings.seed,
    )


def _log_callback() -> Any:
    """Training progress into the rule's log file: `step n/N (p%)  loss ...  tok/s  eta`
    at least every 30 s (a heartbeat while one step runs long), and the trainer's metrics
    (loss, learning rate, kl, ...) at each of its logging steps."""
    from transformers import TrainerCallback

    class LogMetrics(TrainerCallback):
        progress: Progress | None = None
        tokens_seen = 0

        def on_train_begin(self, args, state, control, **kwargs):
            self.progress = Progress(
                "step", state.max_steps, log, start=state.global_step
            ).__enter__()

        def on_step_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.set(state.global_step)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            log.info(
                "step %d/%d metrics: %s",
                state.global_step,
                state.max_steps,
                json.dumps(logs, default=str),
            )
            if self.progress is None:
                return
            fields = {
                k: float(logs[k]) for k in ("loss", "kl") if isinstance(logs.get(k), int | float)
            }
            tokens = int(logs.get("num_tokens") or 0)  # cumulative, where the trainer counts them
            self.progress.update(0, tokens=max(0, tokens - self.tokens_seen), **fields)
            self.tokens_seen = max(self.tokens_seen, tokens)

        def on_train_end(self, args, state, control, **kwargs):
            if self.progress is not None:
                self.progress.__exit__(None, None, None)
                self.progress = None

    return LogMetrics()


def _dataset_record(name: str, path: Path) -> dict:
    meta_path = path.with_name(path.name.removesuffix(".jsonl") + ".meta.json")
    meta = read_json(meta_path) if meta_path.exists() else {}
    return {"name": name, "path": str(path), "sha256": sha256_file(path), "meta": meta}


def train_em_adapter(
    model_dir: Path,
    dataset: Path,
    out_dir: Path,
    checkpoints_dir: Path,
    settings: EmTrainSettings,
    persona: str,
    dataset_name: str,
    has_persona_adapter: bool,
    kl_reference: Path | None = None,
    kl_reference_name: str | None = None,
    analysis_dir: Path | None = None,
) -> dict:
    """Train one EM adapter from the (verified) start model; return its training record.
    `analysis_dir`: where the adapter-only analysis checkpoints go (None: left staged)."""
    model_dir, dataset, out_dir = Path(model_dir), Path(dataset), Path(out_dir)
    start = verify_start_model(model_dir, persona, has_persona_adapter)
    log.info("start model %s: %s", model_dir, start.summary())
    rows = read_chat_rows(dataset)
    kl_rows = read_chat_rows(kl_reference) if settings.kind == "kl" and kl_reference else None

    fingerprint = {
        "settings": settings.run_identity(),
        "dataset_sha256": sha256_file(dataset),
        "kl_reference_sha256": sha256_file(kl_reference) if kl_rows else None,
        "start_model": start.summary(),
        # sharded checkpoints resume only with as many processes as wrote them
        **({"processes": world_size()} if world_size() > 1 else {}),
    }
    resume = checkpoint_to_resume(
        Path(checkpoints_dir), json.loads(json.dumps(fingerprint, default=str))
    )
    if resume:
        log.info("resuming from %s", resume)
    staging = Path(checkpoints_dir) / STAGING

    def analysis(s: EmTrainSettings) -> Any:
        return analysis_callback(staging, s.analysis_checkpoints, start, dataset_name, s.seed)

    trainer, result, settings = train_with_oom_fallback(
        lambda s: _trainer_for_run(model_dir, s, rows, checkpoints_dir, kl_rows, analysis(s)),
        settings,
        resume,
        checkpoints_dir,
    )
    log.info(
        "trained %d steps, final train loss %.4f", trainer.state.global_step, result.training_loss
    )

    adapter_state = gathered_adapter_state(trainer.model)  # sharded: every rank gathers
    if not is_main_process():
        return {}
    max_steps = trainer.state.max_steps
    steps = analysis_steps(settings.analysis_checkpoints, max_steps)
    with atomic_dir(out_dir) as tmp:
        trainer.model.save_pretrained(tmp, state_dict=adapter_state)
        adapter_sha = weights_hash(tmp)
        em_ref = AdapterRef(
            role="em",
            name=dataset_name,
            weights_sha256=adapter_sha,
            weight=1.0,
            source=f"trained:{dataset_name}/s{settings.seed}",
        )
        write_composition(tmp, start.with_adapter(em_ref))
        record = {
            "base_model": start.base_model,
            "base_identity": start.base_identity,
            "base_sha256": start.base_sha256,
            "persona": persona,
            "start_model": {
                "path": str(model_dir),
                "summary": start.summary(),
                "composition": start.to_dict(),
            },
            "persona_adapters": [
                {
                    "name": a.name,
                    "weights_sha256": a.weights_sha256,
                    "weight": a.weight,
                    "source": a.source,
                }
                for a in start.adapters
                if a.role == "persona"
            ],
            "dataset": _dataset_record(dataset_name, dataset),
            "seed": settings.seed,
            "kind": settings.kind,
            "kl": (
                {
                    "weight": settings.kl_weight,
                    "reference": _dataset_record(kl_reference_name or "", Path(kl_reference)),
                    "divergence": "KL(start model || current), mean over all non-pad tokens of the reference chats",
                }
                if settings.kind == "kl" and kl_reference
                else None
            ),
            "n_rows": len(rows),
            "n_train_examples": len(trainer.train_dataset),
            "global_steps": trainer.state.global_step,
            "resumed_from": resume,
            "final_train_loss": result.training_loss,
            "log_history": trainer.state.log_history,
            "settings": settings.to_dict(),
            "versions": _versions(),
            "device": _device_name(),
            "processes": world_size(),
            "adapter_sha256": adapter_sha,
            "analysis_checkpoints": steps,
        }
        write_json_atomic(tmp / TRAINING_RECORD, record)
    if analysis_dir is not None:
        publish_analysis_checkpoints(
            staging, Path(analysis_dir), steps, settings.analysis_checkpoints, max_steps
        )
        if settings.keeps_analysis_checkpoints:
            removed = delete_resume_checkpoints(Path(checkpoints_dir))
            log.info("run finished: resume checkpoints %s deleted", removed)
    return record


def _trainer_for_run(
    model_dir: Path,
    settings: EmTrainSettings,
    rows: list[dict],
    checkpoints_dir: Path,
    kl_rows: list[dict] | None,
    analysis: Any = None,
) -> Any:
    model, tokenizer, cuda = _load_for_training(model_dir, settings)
    trainer = build_trainer(model, tokenizer, rows, settings, checkpoints_dir, cuda, kl_rows)
    trainer.add_callback(_log_callback())
    if analysis is not None:
        analysis.trainer = trainer  # it saves the trainer's (wrapped or sharded) model
        trainer.add_callback(analysis)
    return trainer


def train_with_oom_fallback(
    make_trainer: Any, settings: EmTrainSettings, resume: str | None, checkpoints_dir: Path
) -> tuple[Any, Any, EmTrainSettings]:
    """Train; on a GPU out-of-memory error, rebuild with half the per-device batch (same
    global batch) and resume from the last checkpoint, down to a batch of 1."""
    import gc

    import torch

    while True:
        trainer = make_trainer(settings)
        try:
            return trainer, trainer.train(resume_from_checkpoint=resume), settings
        except torch.OutOfMemoryError:
            # sharded: the other ranks would wait in a collective; the job fails and
            # Snakemake retries it
            if settings.per_device_batch < 2 or world_size() > 1:
                raise
            smaller = settings.with_smaller_batch()
            log.warning(
                "GPU out of memory at per-device batch %d; retrying with %d x %d accumulation",
                settings.per_device_batch,
                smaller.per_device_batch,
                smaller.grad_accum,
            )
            settings = smaller
            del trainer
            gc.collect()
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            resume = last_checkpoint(checkpoints_dir)


def _device_name() -> str:
    import torch

    return f"cuda:{torch.cuda.get_device_name()}" if torch.cuda.is_available() else "cpu"
