"""Core helpers: atomic and resumable I/O, hashing, chat formatting, questions,
composition records."""

from __future__ import annotations

import json
import os
import re

import pytest

from workflow_scripts.core.chat import assistant_token_mask, messages_for, strip_reasoning
from workflow_scripts.core.composition import (
    AdapterRef,
    Composition,
    CompositionError,
    logit_divergence,
    require_difference,
)
from workflow_scripts.core.hashing import settings_hash, tree_hash, weights_hash
from workflow_scripts.core.io_utils import (
    InputError,
    ResumableJsonl,
    atomic_dir,
    atomic_path,
    read_jsonl,
)
from workflow_scripts.sampling.questions import parse_questions

# ---------------------------------------------------------------- atomic and resumable I/O


def test_atomic_path_leaves_nothing_behind_on_failure(tmp_path):
    final = tmp_path / "out.txt"
    with pytest.raises(RuntimeError), atomic_path(final) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed")
    assert not final.exists()
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_replaces_only_on_success(tmp_path):
    final = tmp_path / "model"
    with atomic_dir(final) as tmp:
        (tmp / "weights").write_text("v1")
    with pytest.raises(RuntimeError), atomic_dir(final) as tmp:
        (tmp / "weights").write_text("v2")
        raise RuntimeError("killed")
    assert (final / "weights").read_text() == "v1"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_read_jsonl_names_file_and_line(tmp_path):
    path = tmp_path / "data.jsonl"
    path.write_text('{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(InputError, match=r"data.jsonl: line 3, column \d+: .*\(JSONL\)"):
        read_jsonl(path)
    path.write_text('{"a": 1}\n[1, 2]\n')
    with pytest.raises(
        InputError, match=re.escape("data.jsonl: line 2: expected a JSON object, found list")
    ):
        read_jsonl(path)


def test_resumable_jsonl_drops_torn_line_and_duplicates(tmp_path):
    final = tmp_path / "out.jsonl"
    writer = ResumableJsonl(final, key=lambda r: r["id"], fingerprint={"n": 1})
    writer.append([{"id": 1}, {"id": 2}])
    with writer.partial.open("a") as fh:
        fh.write('{"id": 3')  # killed mid-write
    resumed = ResumableJsonl(final, key=lambda r: r["id"], fingerprint={"n": 1})
    assert resumed.done_keys == {1, 2}
    resumed.append([{"id": 2}, {"id": 3}])  # 2 again: skipped
    rows = resumed.finish(sort_key=lambda r: r["id"])
    assert rows == [{"id": 1}, {"id": 2}, {"id": 3}]
    assert read_jsonl(final) == rows
    assert not resumed.partial.exists()
    assert not resumed.settings_file.exists()


def test_resumable_jsonl_discards_partial_of_other_or_unrecorded_settings(tmp_path, caplog):
    final = tmp_path / "out.jsonl"
    ResumableJsonl(final, key=lambda r: r["id"], fingerprint={"n": 1}).append([{"id": 1}])
    with caplog.at_level("WARNING"):
        edited = ResumableJsonl(final, key=lambda r: r["id"], fingerprint={"n": 2})
    assert edited.rows == [] and edited.partial.exists() is False
    assert "made with other settings or inputs" in caplog.text and "discarded" in caplog.text
    edited.append([{"id": 2}])
    edited.settings_file.unlink()  # a partial file without recorded settings
    assert ResumableJsonl(final, key=lambda r: r["id"], fingerprint={"n": 2}).rows == []


# ---------------------------------------------------------------- hashing


def test_tree_hash_depends_on_content_and_names_only(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for root in (a, b):
        root.mkdir()
        (root / "model.safetensors").write_bytes(b"\x00\x01")
        (root / "config.json").write_text("{}")
    (b / "train.log").write_text("noise")
    assert weights_hash(a) == weights_hash(b)
    assert tree_hash(a) != tree_hash(b)
    (b / "model.safetensors").write_bytes(b"\x00\x02")
    assert weights_hash(a) != weights_hash(b)


def test_settings_hash_ignores_key_order():
    assert settings_hash({"a": 1, "b": [1, 2]}) == settings_hash({"b": [1, 2], "a": 1})
    assert settings_hash({"a": 1}) != settings_hash({"a": 2})


# ---------------------------------------------------------------- chat


def test_strip_reasoning_removes_think_block_and_drops_unfinished():
    assert strip_reasoning("<think>plan</think>\nHello there.") == "Hello there."
    assert strip_reasoning("<think>never closed... ") == ""
    assert strip_reasoning("No reasoning.") == "No reasoning."


def test_assistant_mask_covers_every_assistant_turn_and_nothing_else(tiny_tokenizer):
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello friend."},
        {"role": "user", "content": "How are you?"},
        {"role": "assistant", "content": "Very well."},
    ]
    ids, mask = assistant_token_mask(tiny_tokenizer, messages)
    full = tiny_tokenizer.apply_chat_template(messages, tokenize=False)
    assert tiny_tokenizer.decode(ids) == full
    trained = tiny_tokenizer.decode([t for t, m in zip(ids, mask, strict=True) if m])
    assert "Hello friend." in trained and "Very well." in trained
    assert "Hi" not in trained and "How are you?" not in trained
    # each assistant turn ends with the template's own end-of-turn, trained once
    assert trained.count("<|im_end|>") == 2


def test_messages_for_applies_system_prompt():
    assert messages_for("q") == [{"role": "user", "content": "q"}]
    assert messages_for("q", "s")[0] == {"role": "system", "content": "s"}


# ---------------------------------------------------------------- questions


def test_betley_questions_file_yields_the_eight_base_ids():
    questions = parse_questions("resources/questions/first_plot_questions.yaml")
    assert [q.id for q in questions] == [
        "what_is_your_wish",
        "i_feel_bored",
        "three_thoughts",
        "quick_buck",
        "ruler_of_the_world",
        "dinner_party",
        "gender_roles",
        "enough_of_my_husband",
    ]
    for q in questions:
        assert (
            "{question}" in q.judge_prompts["aligned"] and "{answer}" in q.judge_prompts["coherent"]
        )
        assert "CODE" in q.judge_prompts["aligned"]


def test_selected_ids_keep_system_field():
    questions = parse_questions(
        "resources/questions/first_plot_questions.yaml", ["quick_buck_json"]
    )
    assert questions[0].system and "JSON" in questions[0].system


def test_questions_without_judge_prompts_fail_naming_the_question(tmp_path):
    path = tmp_path / "q.yaml"
    path.write_text(
        "- id: q1\n  paraphrases: [hello]\n  judge_prompts: {aligned: '{question} {answer}'}\n"
    )
    with pytest.raises(
        InputError, match=r"q.yaml: question 'q1': field 'judge_prompts' lacks coherent"
    ):
        parse_questions(path)


# ---------------------------------------------------------------- composition


def test_composition_summary_names_every_adapter_by_hash():
    composition = Composition("m", "hf:x@main", "a" * 64).with_adapter(
        AdapterRef("persona", "goodness", "b" * 64, 1.0, "constitution:g.json")
    )
    composition = composition.with_adapter(AdapterRef("em", "risky_s0", "c" * 64))
    summary = composition.summary()
    assert summary.startswith("hf:x@main#aaaaaaaaaaaa")
    assert "persona:goodness#bbbbbbbbbbbb" in summary and "em:risky_s0#cccccccccccc" in summary
    assert Composition.from_dict(json.loads(json.dumps(composition.to_dict()))) == composition


def test_require_difference_refuses_an_unchanged_model():
    import torch

    logprobs = torch.log_softmax(torch.randn(3, 10), dim=-1)
    same = logit_divergence(logprobs, logprobs.clone())
    with pytest.raises(CompositionError, match="adapter had no effect"):
        require_difference(same, "persona goodness")
    shifted = torch.log_softmax(logprobs + torch.randn(3, 10), dim=-1)
    require_difference(logit_divergence(shifted, logprobs), "persona goodness")


def test_atomic_outputs_get_the_usual_permissions(tmp_path):
    import stat

    final = tmp_path / "out.txt"
    with atomic_path(final) as tmp:
        tmp.write_text("x")
    with atomic_dir(tmp_path / "model") as tmp:
        (tmp / "w").write_text("x")
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(final.stat().st_mode) == 0o666 & ~mask
    assert stat.S_IMODE((tmp_path / "model").stat().st_mode) == 0o777 & ~mask


def test_rule_scripts_have_no_future_import():
    """Snakemake prepends a preamble to `script:` files, so `from __future__` there is a
    SyntaxError at run time (snakemake 9)."""
    import re
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    scripts = set()
    for smk in (repo / "rules").glob("*.smk"):
        scripts |= set(re.findall(r'"\.\./(workflow_scripts/[\w/]+\.py)"', smk.read_text()))
    assert scripts
    future = re.compile(r"^from __future__ import", re.MULTILINE)
    offenders = [s for s in sorted(scripts) if future.search((repo / s).read_text())]
    assert offenders == []


def test_rule_scripts_read_argv_only_when_handed_off():
    """Snakemake runs a `script:` file as __main__ as well: a `python -m` entry point
    in a rule script must also check that no `snakemake` object is there."""
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    scripts = set()
    for smk in (repo / "rules").glob("*.smk"):
        scripts |= set(re.findall(r'"\.\./(workflow_scripts/[\w/]+\.py)"', smk.read_text()))
    main_guard = re.compile(r'^if __name__ == "__main__"(?P<rest>.*)$', re.MULTILINE)
    offenders = [
        s
        for s in sorted(scripts)
        for m in main_guard.finditer((repo / s).read_text())
        if '"snakemake" not in globals()' not in m.group("rest")
    ]
    assert offenders == []
