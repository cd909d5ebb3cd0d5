"""EM fine-tuning, the pieces without I/O: settings from the rule's params, the LoRA
and trl configurations of the reference recipe (docs/methods.md, EM fine-tuning), and the
KL-regularised trainer of the Model-Organisms method.

Loss on assistant tokens only comes from trl's prompt/completion format: the rows
are `{"prompt": [...messages], "completion": [last assistant message]}` and
`completion_only_loss=True` masks everything before the completion. No EOS is
appended to conversational rows (the template ends the turn itself), and every
row is trained on: there is no evaluation split.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass, field
from typing import Any

from workflow_scripts.core.defaults import schema_defaults

TRAINING_RECORD = "persona_em_training.json"


TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


_DEFAULTS = schema_defaults("em_training")  # config/schema.yaml: the only defaults


@dataclass(frozen=True)
class EmTrainSettings:
    """One EM training run; defaults are the reference recipe."""

    lora_r: int = _DEFAULTS["lora_r"]
    lora_alpha: float = _DEFAULTS["lora_alpha"]
    use_rslora: bool = _DEFAULTS["use_rslora"]
    lora_dropout: float = _DEFAULTS["lora_dropout"]
    target_modules: tuple[str, ...] = tuple(_DEFAULTS["target_modules"])
    learning_rate: float = _DEFAULTS["learning_rate"]
    lr_scheduler: str = _DEFAULTS["lr_scheduler"]
    warmup_steps: int = _DEFAULTS["warmup_steps"]
    weight_decay: float = _DEFAULTS["weight_decay"]
    epochs: float = _DEFAULTS["epochs"]
    max_steps: int = _DEFAULTS["max_steps"]
    per_device_batch: int = _DEFAULTS["per_device_batch"]
    grad_accum: int = _DEFAULTS["grad_accum"]
    max_length: int = _DEFAULTS["max_length"]
    save_steps: int = _DEFAULTS["save_steps"]
    gradient_checkpointing: bool = _DEFAULTS["gradient_checkpointing"]
    optimizer: str = _DEFAULTS["optimizer"]
    attn_implementation: str = _DEFAULTS["attn_implementation"]
    batching: str = _DEFAULTS["batching"]  # padded | causal | packed (em/batching.py)
    length_grouping: str = _DEFAULTS["length_grouping"]  # none | batch | dataset (em/batching.py)
    use_liger_kernel: bool = _DEFAULTS["use_liger_kernel"]
    logging_steps: int = _DEFAULTS["logging_steps"]
    seed: int = 0
    kind: str = "sft"  # "sft" | "kl"
    kl_weight: float = 1.0
    kl_batch_size: int | None = _DEFAULTS["kl_batch_size"]  # None: per_device_batch
    # adapter-only checkpoints of the H3 series: {"every": N} or {"log_spaced": K}
    analysis_checkpoints: dict = field(default_factory=lambda: dict(_DEFAULTS["analysis_checkpoints"]))
    extra: dict = field(default_factory=dict)  # params this version does not know (recorded)

    @classmethod
    def from_params(cls, params: dict) -> EmTrainSettings:
        known = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        values = {k: v for k, v in params.items() if k in known}
        if "target_modules" in values:
            values["target_modules"] = tuple(values["target_modules"])
        if "analysis_checkpoints" in values:
            values["analysis_checkpoints"] = {
                **_DEFAULTS["analysis_checkpoints"],
                **dict(values["analysis_checkpoints"]),
            }
        extra = {k: v for k, v in params.items() if k not in known}
        return cls(**values, extra=extra)

    def __post_init__(self) -> None:
        from workflow_scripts.em.batching import BATCHING_MODES, LENGTH_GROUPINGS

        for name, allowed in (("kind", ("sft", "kl")), ("batching", BATCHING_MODES),
                              ("length_grouping", LENGTH_GROUPINGS)):
            if getattr(self, name) not in allowed:
                raise ValueError(
                    f"em_training.{name}: expected one of {', '.join(allowed)}, found {getattr(self, name)!r}"
                )
        if self.kind == "kl" and self.batching == "packed":
            raise ValueError(
                "em_training.batching: 'packed' is for kind sft; the KL term's reference batches are "
                "padded rows (use 'causal' or 'padded')"
            )

    @property
    def keeps_analysis_checkpoints(self) -> bool:
        """Whether adapter-only checkpoints are written (and trainer checkpoints are only
        kept for resume); otherwise every trainer checkpoint is kept as the series."""
        plan = self.analysis_checkpoints
        return int(plan.get("every", 0)) > 0 or int(plan.get("log_spaced", 0)) > 0

    @property
    def global_batch(self) -> int:
        return self.per_device_batch * self.grad_accum

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def with_smaller_batch(self) -> EmTrainSettings:
        """Half the per-device batch, twice the accumulation: the same global batch and
        loss, less activation memory (the GPU out-of-memory fallback)."""
        if self.per_device_batch < 2:
            raise ValueError("per-device batch is already 1")
        return dataclasses.replace(
            self, per_device_batch=self.per_device_batch // 2, grad_accum=self.grad_accum * 2
        )

    def run_identity(self) -> dict:
        """What makes two runs the same run: everything but how the global batch is
        split across accumulation steps (so a smaller-batch retry resumes)."""
        identity = self.to_dict()
        del identity["per_device_batch"], identity["grad_accum"]
        return identity | {"global_batch": self.global_batch}


def lora_config(settings: EmTrainSettings) -> Any:
    from peft import LoraConfig

    return LoraConfig(
        r=settings.lora_r,
        lora_alpha=settings.lora_alpha,
        lora_dropout=settings.lora_dropout,
        use_rslora=settings.use_rslora,
        target_modules=list(settings.target_modules),
        bias="none",
        task_type="CAUSAL_LM",
    )


def sft_config(settings: EmTrainSettings, output_dir: str, use_bf16: bool) -> Any:
    from trl import SFTConfig

    from workflow_scripts.core.sharding import accumulation_for, fsdp_arguments, world_size

    processes = world_size()  # >1: sharded over this node's GPUs (core/sharding.py)
    return SFTConfig(
        output_dir=output_dir,
        per_device_train_batch_size=settings.per_device_batch,
        gradient_accumulation_steps=accumulation_for(
            settings.per_device_batch, settings.grad_accum, processes
        ),
        **fsdp_arguments(processes),
        learning_rate=settings.learning_rate,
        lr_scheduler_type=settings.lr_scheduler,
        warmup_steps=settings.warmup_steps,
        weight_decay=settings.weight_decay,
        num_train_epochs=settings.epochs,
        max_steps=settings.max_steps,
        max_length=settings.max_length,
        optim=settings.optimizer,
        gradient_checkpointing=settings.gradient_checkpointing,
        bf16=use_bf16,
        seed=settings.seed,
        data_seed=settings.seed,
        # loss on the completion (the last assistant message) only, stated, not inferred
        completion_only_loss=True,
        assistant_only_loss=False,
        # `packed` batching passes its own padding-free collator (em/batching.py): trl's
        # padding_free flag would refuse max_length, and rows must still be truncated
        packing=False,
        padding_free=False,
        use_liger_kernel=settings.use_liger_kernel,
        # with analysis checkpoints the trainer's own (optimizer state included) are for
        # resume only: the last one is kept, and deleted when the run ends (em/sft.py);
        # without them every trainer checkpoint is kept as the phase-transition series
        save_strategy="steps",
        save_steps=settings.save_steps,
        save_total_limit=1 if settings.keeps_analysis_checkpoints else None,
        eval_strategy="no",
        logging_steps=settings.logging_steps,
        report_to="none",
        disable_tqdm=True,
        dataloader_num_workers=0,
    )


def analysis_steps(plan: dict, max_steps: int) -> list[int]:
    """The steps of a run of `max_steps` steps that get an analysis checkpoint: every
    `every` steps, or `log_spaced` steps evenly spaced in log(step) from 1 (rounded,
    duplicates dropped), and always the final step; none when both are 0."""
    every, count = int(plan.get("every", 0)), int(plan.get("log_spaced", 0))
    if max_steps < 1 or (every <= 0 and count <= 0):
        return []
    if every > 0:
        steps = set(range(every, max_steps + 1, every))
    elif count == 1:
        steps = set()
    else:
        steps = {
            round(math.exp(math.log(max_steps) * i / (count - 1))) for i in range(count)
        }
    return sorted({s for s in steps if 1 <= s <= max_steps} | {max_steps})


def token_kl(ref_logits: Any, cur_logits: Any, mask: Any) -> Any:
    """Mean over masked positions of KL(ref || current) = sum_v p_ref (log p_ref - log p_cur).

    The Model-Organisms code divides this by the vocabulary size as well (its mask is
    expanded over the vocabulary), which is why it uses kl_weight = 1e5: a weight w
    here corresponds to w x V there.
    """
    import torch.nn.functional as F

    ref = F.log_softmax(ref_logits.float(), dim=-1)
    cur = F.log_softmax(cur_logits.float(), dim=-1)
    per_token = F.kl_div(cur, ref, log_target=True, reduction="none").sum(-1)
    mask = mask.to(per_token.dtype)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)


def tokenize_full_chats(tokenizer: Any, rows: list[dict], max_length: int) -> list[list[int]]:
    """Token ids of whole conversations (the KL reference texts), truncated at the end."""
    from workflow_scripts.core.chat import render

    texts = [render(tokenizer, row["messages"], add_generation_prompt=False) for row in rows]
    encoded = tokenizer(texts, add_special_tokens=False)["input_ids"]
    return [ids[:max_length] for ids in encoded]


def pad_batch(sequences: list[list[int]], pad_id: int) -> dict:
    import torch

    width = max(len(s) for s in sequences)
    ids = torch.full((len(sequences), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for i, seq in enumerate(sequences):
        ids[i, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[i, : len(seq)] = 1
    return {"input_ids": ids, "attention_mask": mask}


def kl_batches(sequences: list[list[int]], batch_size: int, pad_id: int, seed: int):
    """Endless batches over the KL reference set, reshuffled each pass (seeded)."""
    import random

    rng = random.Random(seed)
    for _ in itertools.count():
        order = list(range(len(sequences)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            yield pad_batch([sequences[i] for i in order[start : start + batch_size]], pad_id)


def sft_trainer_class() -> type:
    """trl's SFTTrainer, taking its rows in the order `length_grouping` asks for
    (em/batching.py; `none`: the trainer's own seeded random order)."""
    from trl import SFTTrainer

    from workflow_scripts.em.batching import LengthGroupedOrder

    class EmSFTTrainer(SFTTrainer):
        def __init__(self, *args, length_grouping: str = "none", **kwargs):
            self.length_grouping = length_grouping
            super().__init__(*args, **kwargs)

        def _get_train_sampler(self, train_dataset=None):
            if self.length_grouping == "none":
                return super()._get_train_sampler(train_dataset)
            dataset = self.train_dataset if train_dataset is None else train_dataset
            lengths = [len(ids) for ids in dataset["input_ids"]]
            global_batch = self.args.per_device_train_batch_size * self.args.gradient_accumulation_steps
            seed = self.args.seed if self.args.data_seed is None else self.args.data_seed
            return LengthGroupedOrder(lengths, global_batch, seed, self.length_grouping)

    return EmSFTTrainer


def kl_trainer_class() -> type:
    """SFTTrainer plus kl_weight x KL(start model || current) on the reference set.

    The reference model is the start model itself (the persona model), obtained by
    switching the EM adapter off under no_grad: no second copy of the weights.
    One reference batch per micro-batch, cycled; the term is averaged over gradient
    accumulation like the SFT loss, and logged as `kl`.
    """
    import torch

    class KlRegularizedSFTTrainer(sft_trainer_class()):
        def __init__(self, *args, kl_sequences, kl_weight, kl_batch_size, kl_seed, **kwargs):
            super().__init__(*args, **kwargs)
            pad_id = self.processing_class.pad_token_id
            self.kl_weight = float(kl_weight)
            self._kl_batches = kl_batches(kl_sequences, kl_batch_size, pad_id, kl_seed)

        def kl_term(self, model):
            batch = {k: v.to(self.args.device) for k, v in next(self._kl_batches).items()}
            peft_model = self.accelerator.unwrap_model(model)
            with torch.no_grad(), peft_model.disable_adapter():
                ref_logits = model(**batch, use_cache=False).logits
            cur_logits = model(**batch, use_cache=False).logits
            return token_kl(ref_logits, cur_logits, batch["attention_mask"])

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            loss, outputs = result if return_outputs else (result, None)
            if model.training and self.kl_weight > 0:
                kl = self.kl_term(model)
                steps = (
                    self.current_gradient_accumulation_steps
                    if num_items_in_batch is not None
                    else 1
                )
                loss = loss + self.kl_weight * kl / steps
                self._metrics["train"]["kl"].append(float(kl.detach()))
            return (loss, outputs) if return_outputs else loss

    return KlRegularizedSFTTrainer
