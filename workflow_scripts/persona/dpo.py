"""Rule persona_dpo: LoRA DPO of the base model on the persona pairs."""

import logging
from pathlib import Path

from workflow_scripts.core.hashing import sha256_file
from workflow_scripts.core.io_utils import read_jsonl, write_json_atomic
from workflow_scripts.core.sharding import rank_zero_output
from workflow_scripts.models.loading import model_info
from workflow_scripts.persona.training import LoraTrainSettings, train_dpo

log = logging.getLogger(__name__)


TRAINING_FILE = "persona_training.json"


def run_dpo(
    model_dir: str | Path, pairs: str | Path, out_dir: str | Path, settings: dict, seed: int
) -> dict:
    train = LoraTrainSettings.from_config(settings)
    with rank_zero_output(out_dir) as tmp:  # sharded: rank 0 writes
        report = train_dpo(model_dir, read_jsonl(pairs), tmp, train, seed)
        record = {
            "stage": "dpo",
            "base_model": model_info(model_dir),
            "pairs_sha256": sha256_file(pairs),
            "settings": train.to_dict(),
            "seed": seed,
            "loss": 'loss_type ["sigmoid", "sft"], weights [1, nll_weight]',
            **report,
        }
        write_json_atomic(Path(tmp) / TRAINING_FILE, record)
        _drop_trainer_dir(tmp)
    log.info(
        "DPO: %d steps, loss %s -> %s", report["steps"], report["loss_first"], report["loss_last"]
    )
    return record


def _drop_trainer_dir(out: Path) -> None:
    import shutil

    shutil.rmtree(Path(out) / "trainer", ignore_errors=True)
