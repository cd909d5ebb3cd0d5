"""LoRA DPO and SFT of persona training, with the reference settings of OCT
(OpenRLHF `train_dpo` / `train_sft`): r 64, alpha 128, dropout 0, all linear
projections, lr 5e-5 cosine with warmup 0.1, Adam betas (0.9, 0.98), max grad norm
1.0, no weight decay, global batch 32; DPO beta 0.1 with NLL-on-chosen 0.1 and
max_len 1024; SFT max_len 3072 on the DPO model (DPO LoRA merged in)."""

from __future__ import annotations

import logging
import math
import os
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from workflow_scripts.core.defaults import schema_defaults
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.core.sharding import (
    fsdp_arguments,
    gathered_adapter_state,
    is_main_process,
    load_on_rank_zero,
)

log = logging.getLogger(__name__)


_DEFAULTS = schema_defaults("persona_training.dpo")  # config/schema.yaml: the only defaults


@dataclass(frozen=True)
class LoraTrainSettings:
    """One stage's settings (config `persona_training.dpo` / `.sft`)."""

    lora_r: int = _DEFAULTS["lora_r"]
    lora_alpha: float = _DEFAULTS["lora_alpha"]
    lora_dropout: float = _DEFAULTS["lora_dropout"]
    target_modules: str | tuple[str, ...] = _DEFAULTS["target_modules"]
    learning_rate: float = _DEFAULTS["learning_rate"]
    lr_scheduler: str = _DEFAULTS["lr_scheduler"]
    warmup_ratio: float = _DEFAULTS["warmup_ratio"]
    adam_beta1: float = _DEFAULTS["adam_beta1"]
    adam_beta2: float = _DEFAULTS["adam_beta2"]
    global_batch: int = _DEFAULTS["global_batch"]
    per_device_batch: int = _DEFAULTS["per_device_batch"]
    epochs: float = _DEFAULTS["epochs"]
    max_steps: int = _DEFAULTS["max_steps"]
    max_len: int = _DEFAULTS["max_len"]
    gradient_checkpointing: bool = _DEFAULTS["gradient_checkpointing"]
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    beta: float = _DEFAULTS["beta"]  # DPO only
    nll_weight: float = _DEFAULTS["nll_weight"]  # DPO only

    @classmethod
    def from_config(cls, config: dict, **overrides: Any) -> LoraTrainSettings:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(config) - known)
        if unknown:
            raise InputError(f"persona_training: unknown training setting(s) {', '.join(unknown)}")
        values = {**config, **overrides}
        if isinstance(values.get("target_modules"), list):
            values["target_modules"] = tuple(values["target_modules"])
        return cls(**values)

    def grad_accum(self, world_size: int = 1) -> int:
        """Global batch = per-device batch x devices x gradient accumulation."""
        per_step = self.per_device_batch * world_size
        if self.global_batch % per_step:
            raise InputError(
                f"persona_training: global_batch {self.global_batch} is not a multiple of "
                f"per_device_batch x devices = {self.per_device_batch} x {world_size}"
            )
        return self.global_batch // per_step

    def to_dict(self) -> dict:
        return asdict(self)


def world_size() -> int:
    return int(os.environ.get("WORLD_SIZE", "1"))


def lora_config(settings: LoraTrainSettings) -> Any:
    from peft import LoraConfig

    targets = settings.target_modules
    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        target_modules=targets if isinstance(targets, str) else list(targets),
        use_rslora=False,  # OpenRLHF's plain LoRA: scaling alpha / r
        bias="none",
        task_type="CAUSAL_LM",
    )


def _warmup(ratio: float) -> float:
    # transformers 5 takes the ratio as `warmup_steps` < 1 (>= 1 would mean steps).
    return min(float(ratio), 0.999999)


def _common_args(settings: LoraTrainSettings, output_dir: Path, seed: int) -> dict:
    import torch

    return {
        "output_dir": str(output_dir),
        "learning_rate": settings.learning_rate,
        "lr_scheduler_type": settings.lr_scheduler,
        "warmup_steps": _warmup(settings.warmup_ratio),
        "adam_beta1": settings.adam_beta1,
        "adam_beta2": settings.adam_beta2,
        "optim": "adamw_torch",
        "weight_decay": settings.weight_decay,
        "max_grad_norm": settings.max_grad_norm,
        "per_device_train_batch_size": settings.per_device_batch,
        "gradient_accumulation_steps": settings.grad_accum(world_size()),
        "num_train_epochs": settings.epochs,
        "max_steps": settings.max_steps,
        "max_length": settings.max_len,
        "gradient_checkpointing": settings.gradient_checkpointing,
        "bf16": torch.cuda.is_available(),
        "logging_steps": 1,
        "save_strategy": "no",
        "report_to": [],
        "seed": seed,
        "data_seed": seed,
        "disable_tqdm": True,  # progress goes to the log through LogLosses
        # several GPUs: the model sharded over them (core/sharding.py)
        **fsdp_arguments(world_size()),
    }


def log_losses() -> Any:
    """A trainer callback that writes each logged step to the rule's log."""
    from transformers import TrainerCallback

    class LogLosses(TrainerCallback):
        def on_log(self, args, state, control, logs=None, **kwargs):
            if logs:
                log.info("step %d/%d: %s", state.global_step, state.max_steps, logs)

    return LogLosses()


def dpo_args(settings: LoraTrainSettings, output_dir: Path, seed: int) -> Any:
    from trl import DPOConfig

    return DPOConfig(
        **_common_args(settings, output_dir, seed),
        beta=settings.beta,
        loss_type=["sigmoid", "sft"],
        loss_weights=[1.0, settings.nll_weight],
        truncation_mode="keep_start",
    )


def sft_args(settings: LoraTrainSettings, output_dir: Path, seed: int) -> Any:
    from trl import SFTConfig

    # Pre-tokenized rows with `labels`: trl uses the labels as given (no completion
    # or assistant mask is applied on top, none is needed).
    return SFTConfig(
        **_common_args(settings, output_dir, seed), truncation_mode="keep_start", packing=False
    )


def sft_trainer(
    model: Any,
    tokenizer: Any,
    examples: list[dict],
    settings: LoraTrainSettings,
    output_dir: Path,
    seed: int,
) -> Any:
    from trl import SFTTrainer

    return SFTTrainer(
        model=model,
        args=sft_args(settings, output_dir, seed),
        train_dataset=sft_dataset(examples),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[log_losses()],
    )


def dpo_dataset(pairs: list[dict]) -> Any:
    """OCT pairs ([user, assistant] chosen / rejected) as trl's explicit-prompt
    conversational format: prompt [user], chosen [assistant], rejected [assistant]."""
    from datasets import Dataset

    rows = []
    for pair in pairs:
        if pair["chosen"][:-1] != pair["rejected"][:-1]:
            raise InputError(
                f"pair {pair.get('prompt_id')}: chosen and rejected have different prompts"
            )
        rows.append(
            {
                "prompt": pair["chosen"][:-1],
                "chosen": pair["chosen"][-1:],
                "rejected": pair["rejected"][-1:],
            }
        )
    return Dataset.from_list(rows)


def train_dpo(
    model_dir: str | Path,
    pairs: list[dict],
    out_dir: str | Path,
    settings: LoraTrainSettings,
    seed: int,
) -> dict:
    """LoRA DPO on the base model; the reference is the same model with the adapter
    disabled (trl does that when given `peft_config` and no `ref_model`).

    NLL on chosen: trl's `loss_type=["sigmoid", "sft"]` with weights [1, nll_weight].
    trl's "sft" term is the token mean of -log p over all chosen completion tokens of
    the micro-batch; OpenRLHF's `nll_loss_coef` takes the mean over sequences of each
    sequence's token mean, so long chosen answers weigh a little more here.
    """
    import transformers
    from trl import DPOTrainer

    from workflow_scripts.models.loading import load_tokenizer

    if not pairs:
        raise InputError("persona DPO: no pairs left after filtering (see pairs_report.json)")
    transformers.set_seed(seed)
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    model = _load_for_training(model_dir).train()
    trainer = DPOTrainer(
        model=model,
        ref_model=None,
        args=dpo_args(settings, Path(out_dir) / "trainer", seed),
        train_dataset=dpo_dataset(pairs),
        processing_class=tokenizer,
        peft_config=lora_config(settings),
        callbacks=[log_losses()],
    )
    result = trainer.train()
    save_adapter(trainer, out_dir)
    return _train_report(trainer, result, len(pairs))


def sft_dataset(examples: list[dict]) -> Any:
    from datasets import Dataset

    return Dataset.from_list(
        [{"input_ids": e["input_ids"], "labels": e["labels"]} for e in examples]
    )


def train_sft(
    model_dir: str | Path,
    dpo_adapter: str | Path,
    examples: list[dict],
    out_dir: str | Path,
    settings: LoraTrainSettings,
    seed: int,
) -> dict:
    """LoRA SFT on the DPO model (base with the DPO LoRA merged in, as OCT trains
    on its distilled model). `examples` are pre-tokenized: `input_ids` and `labels`
    (-100 outside assistant turns), so trl uses the labels as given."""
    import transformers
    from peft import PeftModel

    from workflow_scripts.core.composition import (
        logit_divergence,
        next_token_logprobs,
        require_difference,
    )
    from workflow_scripts.models.loading import load_tokenizer

    if not examples:
        raise InputError("persona SFT: no introspection examples to train on")
    transformers.set_seed(seed)
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    base = _load_for_training(model_dir)
    # sharded: only rank 0 holds weights to check; the others get its merged shards
    checked = is_main_process()
    before = next_token_logprobs(base, tokenizer) if checked else None
    model = PeftModel.from_pretrained(base, str(dpo_adapter)).merge_and_unload()
    divergence = None
    if checked:
        divergence = logit_divergence(next_token_logprobs(model, tokenizer), before)
        require_difference(divergence, f"{dpo_adapter}: DPO adapter merged for SFT", min_kl=1e-9)
        log.info("DPO model vs base on probe prompts: %s", divergence)
    model.train()
    trainer = sft_trainer(model, tokenizer, examples, settings, Path(out_dir) / "trainer", seed)
    result = trainer.train()
    save_adapter(trainer, out_dir)
    report = _train_report(trainer, result, len(examples))
    report["dpo_model_vs_base"] = divergence
    return report


def _load_for_training(model_dir: str | Path) -> Any:
    """The start model. Sharded over several GPUs: in host memory (bf16 with CUDA) on
    rank 0 only, FSDP places the shards; else on the run's device."""
    import torch

    from workflow_scripts.models.loading import load_model

    if world_size() <= 1:
        return load_model(model_dir)
    load_on_rank_zero()
    return load_model(model_dir, dtype="bfloat16" if torch.cuda.is_available() else None, device="cpu")


def save_adapter(trainer: Any, out_dir: str | Path) -> None:
    """The trained LoRA in the usual PEFT files; sharded: gathered by every rank,
    written by rank 0."""
    state = gathered_adapter_state(trainer.model)
    if is_main_process():
        trainer.model.save_pretrained(out_dir, state_dict=state)


def _train_report(trainer: Any, result: Any, n_examples: int) -> dict:
    losses = [row["loss"] for row in trainer.state.log_history if "loss" in row]
    return {
        "examples": n_examples,
        "steps": int(trainer.state.global_step),
        "train_loss": float(result.training_loss),
        "loss_first": losses[0] if losses else None,
        "loss_last": losses[-1] if losses else None,
        "log_history": trainer.state.log_history,
        "steps_per_epoch": math.ceil(
            n_examples
            / (trainer.args.per_device_train_batch_size * trainer.args.gradient_accumulation_steps)
        ),
    }
