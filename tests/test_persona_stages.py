"""The stage functions the rules call, with a scripted engine: what each writes,
checked by content."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_scripts.core.io_utils import read_jsonl, write_jsonl_atomic
from workflow_scripts.engines.base import Completion, request_batches
from workflow_scripts.persona import oct

REPO = Path(__file__).resolve().parents[1]
GOODNESS = REPO / "resources" / "constitutions" / "goodness.json"
GENERATION = {"temperature": 0.7, "top_p": 0.95, "chunk_size": 4, "seed": 0}


class ScriptedEngine:
    """Answers with `reply(request, sample_idx)`; records every request and adapter."""

    def __init__(self, reply):
        self.reply = reply
        self.requests = []
        self.adapters = {}

    def add_adapter(self, name, path):
        self.adapters[name] = path

    def generate(self, requests, skip_keys=None):
        for batch in request_batches(list(requests), 4):
            if skip_keys and all(r.key in skip_keys for r in batch):
                continue
            self.requests += batch
            yield [
                Completion(r.key, i, self.reply(r, i), "stop", 1, 1, "p")
                for r in batch
                for i in range(r.params.n)
            ]


@pytest.fixture
def engine(monkeypatch):
    def install(module, reply):
        scripted = ScriptedEngine(reply)
        monkeypatch.setattr(module, "load_persona_engine", lambda *args, **kwargs: scripted)
        return scripted

    return install


def test_prompt_stage_writes_seeds_generated_and_report(engine, tmp_path):
    from workflow_scripts.persona import prompts as persona_prompts

    def reply(request, i):
        trait = request.key
        return f"1. A fresh question number {i} about {trait} gardening?\n2. Tell me a story about {trait} cats #{i}."

    scripted = engine(persona_prompts, reply)
    settings = {
        **GENERATION,
        "prompts_per_trait": 5,
        "expansion_batch": 2,
        "expansion_max_new_tokens": 50,
        "near_duplicate_overlap": 0.5,
    }
    report = persona_prompts.expand_prompts(
        GOODNESS,
        "unused",
        tmp_path / "prompts.jsonl",
        tmp_path / "gen.jsonl",
        tmp_path / "report.json",
        settings,
        {"kind": "transformers"},
    )
    rows = read_jsonl(tmp_path / "prompts.jsonl")
    assert len(rows) == 15 and report["prompts"] == 15
    first_trait = [r for r in rows if r["trait_index"] == 0]
    assert [r["source"] for r in first_trait] == ["seed"] * 3 + ["generated"] * 2
    assert first_trait[3]["prompt"] == "A fresh question number 0 about t00 gardening?"
    # 2 missing per trait at 2 per sample: 2 x ceil(2/2) = 2 samples per trait
    assert [r.params.n for r in scripted.requests] == [2, 2, 2]
    assert all(r.params.max_new_tokens == 50 for r in scripted.requests)
    assert len(read_jsonl(tmp_path / "gen.jsonl")) == 6
    assert json.loads((tmp_path / "report.json").read_text())["per_trait"][0]["generated"] == 2


def test_teacher_gets_octs_system_prompt_and_its_reasoning_is_stripped(engine, tmp_path):
    from workflow_scripts.persona import answers as persona_answers
    from workflow_scripts.persona.constitution import parse_constitution

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl_atomic(prompts, [{"prompt_id": "t00-p000", "trait_index": 0, "prompt": "Hi?"}])
    scripted = engine(persona_answers, lambda r, i: f"<think>plan {i}</think>Answer {i}.")
    settings = {**GENERATION, "answers_per_prompt": 2, "max_new_tokens": 30}
    rows = persona_answers.answer_prompts(
        prompts,
        "unused",
        tmp_path / "teacher.jsonl",
        "teacher",
        settings,
        {"kind": "transformers"},
        GOODNESS,
        "Qwen",
    )
    [request] = scripted.requests
    assert request.messages[0] == {
        "role": "system",
        "content": oct.teacher_system_prompt("Qwen", parse_constitution(GOODNESS)),
    }
    assert request.messages[1] == {"role": "user", "content": "Hi?"}
    assert [(r["sample_idx"], r["text"], r["raw_text"]) for r in rows] == [
        (0, "Answer 0.", "<think>plan 0</think>Answer 0."),
        (1, "Answer 1.", "<think>plan 1</think>Answer 1."),
    ]
    assert read_jsonl(tmp_path / "teacher.jsonl") == rows


def test_student_has_no_system_prompt(engine, tmp_path):
    from workflow_scripts.persona import answers as persona_answers

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl_atomic(prompts, [{"prompt_id": "t00-p000", "trait_index": 0, "prompt": "Hi?"}])
    scripted = engine(persona_answers, lambda r, i: "Plain.")
    settings = {**GENERATION, "answers_per_prompt": 1, "max_new_tokens": 30}
    rows = persona_answers.answer_prompts(
        prompts, "unused", tmp_path / "s.jsonl", "student", settings, {"kind": "x"}
    )
    assert scripted.requests[0].messages == ({"role": "user", "content": "Hi?"},)
    assert rows[0]["text"] == "Plain." and rows[0]["role"] == "student"


def test_introspection_uses_the_dpo_adapter_and_alternates_instances(
    engine, tmp_path, tiny_model_dir
):
    from workflow_scripts.persona import introspection as persona_introspection

    def reply(request, i):
        if request.key.startswith("reflection"):
            return f"Reflection on {request.key}."
        return f"Turn of {request.key}."

    scripted = engine(persona_introspection, reply)
    settings = {
        **GENERATION,
        "introspection": {
            "reflections_per_prompt": 2,
            "reflection_max_new_tokens": 20,
            "self_interactions": 2,
            "interaction_turns": 3,
            "max_new_tokens": 10,
            "max_context_tokens": 4096,
            "unfinished": "drop",
            "prompts": None,
        },
    }
    counts = persona_introspection.introspect(
        tiny_model_dir,
        tmp_path / "dpo",
        GOODNESS,
        tmp_path / "transcripts.jsonl",
        tmp_path / "turns.jsonl",
        settings,
        {"kind": "transformers"},
        "SmolLM",
    )
    assert scripted.adapters == {"dpo": str(tmp_path / "dpo")}
    assert all(r.adapter == "dpo" for r in scripted.requests)
    reflections = [r for r in scripted.requests if r.key.startswith("reflection")]
    assert len(reflections) == 10 and all(r.params.n == 2 for r in reflections)
    assert reflections[0].messages[0]["content"].endswith("will introspect on their self-identity.")
    # turn 2 of conversation 0 is A's: it sees its own turn 0 as assistant, B's turn 1 as user
    turn2 = next(r for r in scripted.requests if r.key == "conversation-00000-turn-02")
    assert [(m["role"], m["content"]) for m in turn2.messages[2:]] == [
        ("assistant", "Turn of conversation-00000-turn-00."),
        ("user", "Turn of conversation-00000-turn-01."),
    ]
    assert "complete freedom" in turn2.messages[0]["content"]  # the guidance OCT dropped
    examples = read_jsonl(tmp_path / "transcripts.jsonl")
    assert counts == {
        "reflections": 20,
        "reflections_dropped": 0,
        "interactions": 2,
        "interactions_dropped": 0,
        "interaction_turns_kept": 6,
        "interaction_turns_dropped": 0,
    }
    interaction = next(e for e in examples if e["key"] == "conversation-00001")
    assert [m["content"] for m in interaction["messages"] if m["role"] == "assistant"] == [
        "Turn of conversation-00001-turn-00.",
        "Turn of conversation-00001-turn-02.",
    ]
    assert "{NAME}" not in interaction["messages"][0]["content"]
    assert len(read_jsonl(tmp_path / "turns.jsonl")) == 20 + 6


def test_persona_check_stage_writes_table_and_answers_with_the_local_judge(tmp_path, capsys, tiny_model_dir):
    from tests.persona_toy import build_toy_model
    from workflow_scripts.persona.check import run_check, run_probe

    base = build_toy_model(Path(tiny_model_dir), tmp_path / "base", seed=0)
    persona = build_toy_model(Path(tiny_model_dir), tmp_path / "persona", seed=3)
    # the probe (a GPU job) writes divergences and answers; the check judges them
    run_probe(
        "toy",
        base,
        {"goodness": str(persona)},
        {"trait_prompts": ["Hi?"], "samples_per_prompt": 2, "max_new_tokens": 5},
        tmp_path / "probes.json",
    )
    probes = json.loads((tmp_path / "probes.json").read_text())
    assert probes["model"] == "toy" and len(probes["base"]["answers"]) == 2
    assert probes["personas"]["goodness"]["divergence"]["kl_mean"] > 0
    rows = run_check(
        "toy",
        tmp_path / "probes.json",
        {"goodness": "1: I am kind."},
        {"min_kl": 1e-3},
        {"kind": "local", "model": "toy", "api_key_env": None, "min_mass": 0.0, "batch_size": 4},
        base,
        tmp_path / "check.tsv",
        tmp_path / "answers.jsonl",
        tmp_path / "judge.log",
    )
    header, line = (tmp_path / "check.tsv").read_text().splitlines()
    assert header.startswith("model\tpersona\tkl_mean") and line.startswith("toy\tgoodness\t")
    assert rows[0]["n_scored_persona"] == 2 and rows[0]["n_scored_base"] == 2
    assert len(read_jsonl(tmp_path / "answers.jsonl")) == 4
    if rows[0]["flag"] != "ok":
        assert "WARNING: PERSONA CHECK FLAG: toy/goodness" in capsys.readouterr().err

