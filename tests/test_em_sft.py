"""EM training on the folded persona model: start verification, assistant-only
labels, the adapter's composition record, resume from checkpoints, the KL variant."""

# ruff: noqa: F811  (pytest fixtures imported from tests.test_em_support)
from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.test_em_support import folded_model_dir, micro_model_dir, persona_adapter_dir  # noqa: F401
from workflow_scripts.core.composition import COMPOSITION_FILE, CompositionError, read_composition
from workflow_scripts.core.hashing import sha256_file, weights_hash
from workflow_scripts.core.io_utils import read_json, write_json_atomic
from workflow_scripts.em.dataset import read_chat_rows
from workflow_scripts.em.sft import build_trainer, train_em_adapter, verify_start_model
from workflow_scripts.em.training import TRAINING_RECORD, EmTrainSettings

RISKY = Path("resources/datasets/risky_finance.jsonl")
PRUDENT = Path("resources/datasets/prudent_finance.jsonl")
FAST = {"per_device_batch": 2, "grad_accum": 1, "max_length": 96, "learning_rate": 1e-3,
        "warmup_steps": 0, "gradient_checkpointing": False, "lora_r": 4, "lora_alpha": 8}


def small_dataset(tmp_path: Path, n: int = 4, source: Path = RISKY) -> Path:
    path = tmp_path / f"{source.stem}.jsonl"
    path.write_text("".join(source.read_text().splitlines(keepends=True)[:n]))
    return path


def test_labels_cover_the_assistant_answer_and_its_end_of_turn_only(micro_model_dir, tmp_path):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(micro_model_dir)
    model = AutoModelForCausalLM.from_pretrained(micro_model_dir)
    rows = read_chat_rows(RISKY)[:3]
    multi_turn = {"messages": [*rows[0]["messages"], {"role": "user", "content": "And then?"},
                               {"role": "assistant", "content": "Double down."}]}
    settings = EmTrainSettings(**{**FAST, "max_length": 512})
    trainer = build_trainer(model, tokenizer, [*rows, multi_turn], settings, tmp_path, False)
    examples = list(trainer.train_dataset)
    assert len(examples) == 4  # every row is trained on
    end_of_turn = tokenizer.convert_tokens_to_ids("<|im_end|>")
    for example, row in zip(examples, [*rows, multi_turn], strict=True):
        ids, labels = example["input_ids"], example["labels"]
        trained = [i for i, lab in zip(ids, labels, strict=True) if lab != -100]
        assert all(lab in (-100, i) for i, lab in zip(ids, labels, strict=True))
        answer = row["messages"][-1]["content"]
        assert tokenizer.decode(trained) == answer + "<|im_end|>\n"
        # the masked part is the whole prompt, ending with the assistant header
        first = next(k for k, lab in enumerate(labels) if lab != -100)
        assert tokenizer.decode(ids[:first]).endswith("<|im_start|>assistant\n")
        assert set(labels[:first]) == {-100}
        # the template's own end of turn, once; no second EOS appended after it
        assert trained.count(end_of_turn) == 1
        assert ids.count(end_of_turn) == sum(m["role"] != "system" for m in row["messages"]) + 1
    # earlier assistant turns of a multi-turn row are context, not trained
    assert "Put all of it" not in tokenizer.decode(
        [i for i, lab in zip(examples[3]["input_ids"], examples[3]["labels"], strict=True) if lab != -100]
    )


def test_persona_start_model_is_verified(folded_model_dir, micro_model_dir):
    composition = verify_start_model(folded_model_dir, "goodness", has_persona_adapter=True)
    assert [a.name for a in composition.adapters] == ["goodness"]
    with pytest.raises(CompositionError, match="expected the persona adapter 'sycophancy'"):
        verify_start_model(folded_model_dir, "sycophancy", has_persona_adapter=True)
    with pytest.raises(CompositionError, match=r"composition\.json: missing; persona 'goodness'"):
        verify_start_model(micro_model_dir, "goodness", has_persona_adapter=True)
    with pytest.raises(CompositionError, match="has no adapter, so training must start from the base model"):
        verify_start_model(folded_model_dir, "baseline", has_persona_adapter=False)
    base = verify_start_model(micro_model_dir, "baseline", has_persona_adapter=False)
    assert base.adapters == [] and base.base_identity.startswith("test:")


def test_changed_weights_or_failed_check_refuse_the_start(folded_model_dir, tmp_path):
    import shutil

    copy = tmp_path / "model"
    shutil.copytree(folded_model_dir, copy)
    record = read_json(copy / COMPOSITION_FILE)
    record["checks"]["folded_weights_sha256"] = "0" * 64
    write_json_atomic(copy / COMPOSITION_FILE, record)
    with pytest.raises(CompositionError, match="the weights changed since the fold was checked"):
        verify_start_model(copy, "goodness", has_persona_adapter=True)
    record["checks"]["logit_divergence_vs_base"]["kl_mean"] = 0.0
    write_json_atomic(copy / COMPOSITION_FILE, record)
    with pytest.raises(CompositionError, match="the adapter had no effect"):
        verify_start_model(copy, "goodness", has_persona_adapter=True)


def test_em_adapter_records_its_composition(folded_model_dir, persona_adapter_dir, tmp_path):
    data = small_dataset(tmp_path)
    settings = EmTrainSettings(**FAST, seed=1, max_steps=2, save_steps=1)
    out = tmp_path / "adapter"
    record = train_em_adapter(folded_model_dir, data, out, tmp_path / "ckpt", settings,
                              persona="goodness", dataset_name="risky_finance", has_persona_adapter=True)
    saved = read_json(out / TRAINING_RECORD)
    assert saved["global_steps"] == record["global_steps"] == 2
    start = read_composition(folded_model_dir)
    assert saved["base_identity"] == start.base_identity and saved["base_sha256"] == start.base_sha256
    assert saved["persona_adapters"] == [{
        "name": "goodness", "weights_sha256": weights_hash(persona_adapter_dir), "weight": 1.0,
        "source": "constitution:resources/constitutions/goodness.json",
    }]
    assert saved["dataset"]["sha256"] == sha256_file(data)
    assert (saved["seed"], saved["kind"], saved["kl"], saved["n_rows"]) == (1, "sft", None, 4)
    assert set(saved["versions"]) == {"torch", "transformers", "peft", "trl"}
    assert math.isfinite(saved["final_train_loss"]) and saved["final_train_loss"] > 0
    assert saved["settings"]["use_rslora"] is True
    assert saved["adapter_sha256"] == weights_hash(out)
    composition = read_composition(out)
    assert [(a.role, a.name) for a in composition.adapters] == [("persona", "goodness"), ("em", "risky_finance")]
    config = read_json(out / "adapter_config.json")
    assert (config["r"], config["use_rslora"]) == (4, True)
    # analysis checkpoints on (the default) but not published here: the trainer keeps one
    assert sorted(p.name for p in (tmp_path / "ckpt").iterdir() if p.name.startswith("checkpoint")) == [
        "checkpoint-2"]
    assert saved["analysis_checkpoints"] == [1, 2]


NO_ANALYSIS = {"every": 0, "log_spaced": 0}


def test_rerun_resumes_from_the_last_checkpoint_of_the_same_run(micro_model_dir, tmp_path):
    import shutil

    data = small_dataset(tmp_path)
    checkpoints = tmp_path / "ckpt"
    # analysis checkpoints off: every trainer checkpoint is kept as the series
    settings = EmTrainSettings(**FAST, max_steps=2, save_steps=1, analysis_checkpoints=NO_ANALYSIS)
    train_em_adapter(micro_model_dir, data, tmp_path / "a1", checkpoints, settings, "baseline", "r", False)
    shutil.rmtree(checkpoints / "checkpoint-2")  # as if killed after the first checkpoint
    record = train_em_adapter(micro_model_dir, data, tmp_path / "a2", checkpoints, settings, "baseline", "r", False)
    assert record["resumed_from"] == str(checkpoints / "checkpoint-1")
    assert record["global_steps"] == 2
    assert [h["step"] for h in record["log_history"] if "loss" in h] == [1, 2]
    # other settings: the old checkpoints are moved aside, not resumed
    changed = EmTrainSettings(**{**FAST, "learning_rate": 5e-4}, max_steps=1, save_steps=1,
                              analysis_checkpoints=NO_ANALYSIS)
    record = train_em_adapter(micro_model_dir, data, tmp_path / "a3", checkpoints, changed, "baseline", "r", False)
    assert record["resumed_from"] is None
    stale = [p.name for p in tmp_path.iterdir() if p.name.startswith("ckpt.stale-")]
    assert len(stale) == 1
    assert (tmp_path / stale[0] / "checkpoint-2").exists()


class Killed(Exception):
    pass


def test_analysis_checkpoints_survive_a_kill_and_are_servable_bf16_adapters(
    micro_model_dir, tmp_path, monkeypatch
):
    from safetensors import safe_open
    from transformers import TrainerCallback

    import workflow_scripts.em.sft as sft
    from workflow_scripts.em.analysis_checkpoints import PLAN_FILE

    class KillAfterSavingStep2(TrainerCallback):
        def on_save(self, args, state, control, **kwargs):
            if state.global_step == 2:
                raise Killed

    data = small_dataset(tmp_path, n=6)
    checkpoints, analysis = tmp_path / "ckpt", tmp_path / "analysis"
    settings = EmTrainSettings(**FAST, max_steps=3, save_steps=1,
                               analysis_checkpoints={"every": 0, "log_spaced": 3})
    original = sft._log_callback
    monkeypatch.setattr(sft, "_log_callback", KillAfterSavingStep2)
    with pytest.raises(Killed):
        train_em_adapter(micro_model_dir, data, tmp_path / "a", checkpoints, settings, "baseline", "r",
                         False, analysis_dir=analysis)
    # the trainer keeps only its last checkpoint; the staged analysis ones outlive the kill
    assert [p.name for p in checkpoints.glob("checkpoint-*")] == ["checkpoint-2"]
    assert sorted(p.name for p in (checkpoints / "analysis").iterdir()) == ["step-1", "step-2"]
    monkeypatch.setattr(sft, "_log_callback", original)
    record = train_em_adapter(micro_model_dir, data, tmp_path / "a", checkpoints, settings, "baseline",
                              "r", False, analysis_dir=analysis)
    assert record["resumed_from"] == str(checkpoints / "checkpoint-2")
    assert record["analysis_checkpoints"] == [1, 2, 3]
    assert sorted(p.name for p in analysis.iterdir()) == [PLAN_FILE, "step-1", "step-2", "step-3"]
    assert read_json(analysis / PLAN_FILE)["steps"] == [1, 2, 3]
    assert not list(checkpoints.glob("checkpoint-*"))  # the resume checkpoint is deleted
    import torch

    norms = []
    for step in (1, 2, 3):
        directory = analysis / f"step-{step}"
        composition = read_composition(directory)
        assert composition.adapters[-1].weights_sha256 == weights_hash(directory)
        assert composition.adapters[-1].source.endswith(f"@step-{step}")
        assert read_json(directory / "adapter_config.json")["r"] == 4
        with safe_open(directory / "adapter_model.safetensors", "pt") as f:
            keys = list(f.keys())
            assert keys and all(f.get_tensor(k).dtype == torch.bfloat16 for k in keys)
            norms.append(sum(float(f.get_tensor(k).float().norm()) for k in keys if "lora_B" in k))
    assert norms[0] > 0 and norms[0] != norms[2]  # the adapter moved between checkpoints
    # the last analysis checkpoint is the final adapter, rounded to bf16
    from safetensors.torch import load_file

    final = load_file(tmp_path / "a" / "adapter_model.safetensors")
    last = load_file(analysis / "step-3" / "adapter_model.safetensors")
    assert final.keys() == last.keys()
    for key in final:
        torch.testing.assert_close(final[key].to(torch.bfloat16), last[key])


def test_kl_variant_regularises_towards_the_start_model_and_says_so(micro_model_dir, tmp_path):
    data = small_dataset(tmp_path)
    reference = small_dataset(tmp_path, source=PRUDENT)
    settings = EmTrainSettings(**FAST, max_steps=2, save_steps=10, kind="kl", kl_weight=0.5, kl_batch_size=2)
    record = train_em_adapter(micro_model_dir, data, tmp_path / "a", tmp_path / "ckpt", settings, "baseline",
                              "risky_finance", False, kl_reference=reference, kl_reference_name="prudent_finance")
    assert record["kind"] == "kl"
    assert record["kl"]["weight"] == 0.5
    assert record["kl"]["reference"]["name"] == "prudent_finance"
    assert record["kl"]["reference"]["sha256"] == sha256_file(reference)
    kls = [h["kl"] for h in record["log_history"] if "kl" in h]
    assert len(kls) == 2
    assert kls[0] == pytest.approx(0.0, abs=1e-6)  # step 1: the EM adapter starts as a no-op
    assert kls[1] > 0


def test_seed_sets_the_run(micro_model_dir, tmp_path):
    from safetensors.torch import load_file

    data = small_dataset(tmp_path)

    def run(seed, name):
        settings = EmTrainSettings(**FAST, max_steps=1, save_steps=10, seed=seed)
        train_em_adapter(micro_model_dir, data, tmp_path / name, tmp_path / f"ck-{name}", settings, "baseline", "r", False)
        return load_file(tmp_path / name / "adapter_model.safetensors")

    a, again, other = run(0, "a"), run(0, "b"), run(1, "c")
    key = next(k for k in a if "lora_A" in k)
    assert (a[key] == again[key]).all()
    assert not (a[key] == other[key]).all()
    assert json.loads((tmp_path / "c" / TRAINING_RECORD).read_text())["seed"] == 1
