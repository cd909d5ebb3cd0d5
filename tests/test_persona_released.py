"""Released adapters: fetched at a pinned revision, read from the Hugging Face cache
where the Hub is off, and a clear error when they are not there."""

from __future__ import annotations

import json

import pytest

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.persona.released import RECORD_FILE, fetch_released_adapter

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def offline_cache(tmp_path, monkeypatch):
    """An HF hub cache holding maius/qwen-personas@main with a goodness adapter; Hub off."""
    from huggingface_hub import constants

    cache = tmp_path / "hub"
    repo = cache / "models--maius--qwen-personas"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(COMMIT)
    folder = repo / "snapshots" / COMMIT / "goodness"
    folder.mkdir(parents=True)
    (folder / "adapter_config.json").write_text(
        json.dumps(
            {
                "r": 64,
                "lora_alpha": 128,
                "use_rslora": False,
                "target_modules": ["q_proj"],
                "base_model_name_or_path": "Qwen/Qwen2.5-7B-Instruct",
                "peft_type": "LORA",
            }
        )
    )
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return cache


def test_cached_adapter_is_copied_with_its_provenance(offline_cache, tmp_path):
    out = tmp_path / "released_adapter"
    record = fetch_released_adapter("maius/qwen-personas", "goodness", "main", out)
    assert sorted(p.name for p in out.iterdir()) == [
        "adapter_config.json",
        "adapter_model.safetensors",
        RECORD_FILE,
    ]
    assert (out / "adapter_model.safetensors").read_bytes() == b"weights"
    assert record["resolved_commit"] == COMMIT
    assert record["lora"]["r"] == 64 and record["lora"]["lora_alpha"] == 128
    assert json.loads((out / RECORD_FILE).read_text()) == record


def test_missing_offline_adapter_names_repo_and_what_to_run(offline_cache, tmp_path):
    with pytest.raises(InputError) as err:
        fetch_released_adapter("maius/qwen-personas", "sarcasm", "main", tmp_path / "out")
    message = str(err.value)
    assert message.startswith("released adapter maius/qwen-personas/sarcasm@main: ")
    assert "HF_HUB_OFFLINE=1" in message and "internet" in message
    assert not (tmp_path / "out").exists()


def test_unknown_repository_offline_is_the_same_clear_error(offline_cache, tmp_path):
    with pytest.raises(
        InputError, match=r"maius/llama-misalignment@abc: not in the Hugging Face cache"
    ):
        fetch_released_adapter("maius/llama-misalignment", None, "abc", tmp_path / "out")


def test_folder_without_adapter_config_is_rejected_online(tmp_path, monkeypatch):
    from workflow_scripts.persona import released as released_adapter

    snapshot = tmp_path / "snap" / COMMIT
    (snapshot / "goodness").mkdir(parents=True)
    monkeypatch.setattr(released_adapter, "_snapshot", lambda repo, sub, rev: snapshot)
    monkeypatch.setattr(released_adapter, "_offline", lambda: False)
    with pytest.raises(InputError, match=r"maius/x/goodness@main: no adapter_config.json"):
        fetch_released_adapter("maius/x", "goodness", "main", tmp_path / "out")
