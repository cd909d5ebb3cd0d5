"""Rule persona_sft: LoRA SFT of the DPO model (DPO LoRA merged into the base) on the
introspection transcripts, with loss on every assistant turn."""

import logging
from pathlib import Path

from workflow_scripts.core.hashing import sha256_file, weights_hash
from workflow_scripts.core.io_utils import read_jsonl, write_json_atomic
from workflow_scripts.core.sharding import rank_zero_output
from workflow_scripts.models.loading import load_tokenizer, model_info
from workflow_scripts.persona.introspection import tokenize_example
from workflow_scripts.persona.training import LoraTrainSettings, train_sft

log = logging.getLogger(__name__)


TRAINING_FILE = "persona_training.json"


def sft_examples(transcripts: list[dict], tokenizer, max_len: int) -> tuple[list[dict], dict]:
    examples = [tokenize_example(tokenizer, row["messages"], max_len) for row in transcripts]
    counts = {
        "examples": len(examples),
        "truncated_to_max_len": sum(e["truncated"] for e in examples),
        "assistant_turns": sum(e["n_assistant_turns"] for e in examples),
        "trained_tokens": sum(sum(label != -100 for label in e["labels"]) for e in examples),
    }
    return examples, counts


def run_sft(
    model_dir: str | Path,
    dpo_adapter: str | Path,
    transcripts: str | Path,
    out_dir: str | Path,
    settings: dict,
    seed: int,
) -> dict:
    train = LoraTrainSettings.from_config(settings)
    tokenizer = load_tokenizer(model_dir, padding_side="right")
    examples, counts = sft_examples(read_jsonl(transcripts), tokenizer, train.max_len)
    log.info("SFT data: %s", counts)
    with rank_zero_output(out_dir) as tmp:  # sharded: rank 0 writes
        report = train_sft(model_dir, dpo_adapter, examples, tmp, train, seed)
        record = {
            "stage": "sft",
            "base_model": model_info(model_dir),
            "trained_on": "base model with the DPO adapter merged in",
            "dpo_adapter_sha256": weights_hash(dpo_adapter),
            "transcripts_sha256": sha256_file(transcripts),
            "data": counts,
            "settings": train.to_dict(),
            "seed": seed,
            **report,
        }
        write_json_atomic(Path(tmp) / TRAINING_FILE, record)
        import shutil

        shutil.rmtree(Path(tmp) / "trainer", ignore_errors=True)
    log.info(
        "SFT: %d steps, loss %s -> %s", report["steps"], report["loss_first"], report["loss_last"]
    )
    return record
