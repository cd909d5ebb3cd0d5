"""Generation stages resume after a kill: at most the current chunk is lost, no row
is lost or duplicated, and the resumed output equals an uninterrupted run."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tests.persona_toy import toy_model_dir  # noqa: F401  (fixture)
from workflow_scripts.engines.base import (
    Completion,
    GenerationRequest,
    SamplingParams,
    batch_seed,
    request_batches,
)
from workflow_scripts.persona.generation import generate_into, open_output

REPO = Path(__file__).resolve().parents[1]


class Killed(Exception):
    pass


class FakeEngine:
    """Deterministic engine: text depends on the batch seed, as with a real one."""

    def __init__(self, batch_size: int, die_before_batch: int | None = None):
        self.batch_size = batch_size
        self.die_before_batch = die_before_batch
        self.generated_batches = 0

    def generate(self, requests, skip_keys=None):
        for index, batch in enumerate(request_batches(list(requests), self.batch_size)):
            if skip_keys and all(r.key in skip_keys for r in batch):
                continue
            if self.die_before_batch == index:
                raise Killed
            self.generated_batches += 1
            seed = batch_seed(batch)
            yield [
                Completion(r.key, i, f"{r.key}/{i}/{seed}", "stop", 3, 2, "p")
                for r in batch
                for i in range(r.params.n)
            ]


def requests(n=10, samples=2):
    params = SamplingParams(n=samples)
    return [
        GenerationRequest(
            key=f"q{i:02d}", messages=({"role": "user", "content": str(i)},), params=params
        )
        for i in range(n)
    ]


FINGERPRINT = {"settings": {"temperature": 0.7}}


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_resume_after_kill_loses_nothing_and_duplicates_nothing(tmp_path):
    reference = open_output(tmp_path / "ref.jsonl", FINGERPRINT)
    generate_into(FakeEngine(4), requests(), reference)
    expected = reference.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))

    out = tmp_path / "out.jsonl"
    with pytest.raises(Killed):
        generate_into(FakeEngine(4, die_before_batch=3), requests(), open_output(out, FINGERPRINT))
    partial = out.with_name("out.jsonl.partial")
    assert len(lines(partial)) == 3 * 4  # three chunks of 2 requests x 2 samples on disk
    assert not out.exists()

    engine = FakeEngine(4)
    resumed = open_output(out, FINGERPRINT)
    generate_into(engine, requests(), resumed)
    rows = resumed.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))
    assert engine.generated_batches == 2  # only the missing chunks ran again
    assert rows == expected
    assert lines(out) == expected and not partial.exists()


def test_torn_and_half_written_chunk_is_completed_without_duplicates(tmp_path):
    reference = open_output(tmp_path / "ref.jsonl", FINGERPRINT)
    generate_into(FakeEngine(4), requests(), reference)
    expected = reference.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))

    out = tmp_path / "out.jsonl"
    open_output(out, FINGERPRINT)  # the killed run's start: its settings are recorded
    partial = out.with_name("out.jsonl.partial")
    # killed while writing the second chunk: one full row of it, then a torn line
    kept = [json.dumps(r) + "\n" for r in expected[:5]]
    partial.write_text("".join(kept) + json.dumps(expected[5])[:17])
    resumed = open_output(out, FINGERPRINT)
    assert len(resumed.rows) == 5
    generate_into(FakeEngine(4), requests(), resumed)
    rows = resumed.finish(sort_key=lambda r: (r["key"], r["sample_idx"]))
    assert rows == expected
    keys = [(r["key"], r["sample_idx"]) for r in rows]
    assert len(keys) == len(set(keys)) == 20


def test_partial_output_of_other_settings_is_discarded(tmp_path):
    out = tmp_path / "out.jsonl"
    with pytest.raises(Killed):
        generate_into(FakeEngine(4, die_before_batch=3), requests(), open_output(out, FINGERPRINT))
    assert len(lines(out.with_name("out.jsonl.partial"))) == 12
    edited = {"settings": {"temperature": 1.0}}
    resumed = open_output(out, edited)
    assert resumed.rows == []
    engine = FakeEngine(4)
    generate_into(engine, requests(), resumed)
    assert engine.generated_batches == 5  # everything again, under the new settings


def test_extra_fields_are_added_to_rows(tmp_path):
    output = open_output(tmp_path / "x.jsonl", FINGERPRINT)
    generate_into(
        FakeEngine(8), requests(2, 1), output, extra=lambda r: {"prompt": r.messages[0]["content"]}
    )
    assert [(r["key"], r["prompt"]) for r in output.rows] == [("q00", "0"), ("q01", "1")]



def test_generation_logs_done_total_and_rate(tmp_path, caplog):
    caplog.set_level("INFO", logger="workflow_scripts.persona.generation")
    output = open_output(tmp_path / "x.jsonl", FINGERPRINT)
    generate_into(FakeEngine(4), requests(10, 2), output)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith("generated (10 requests to do) 0/20 (0%)")
    assert any(m.startswith("generated (10 requests to do) 20/20 (100%)") and "done in" in m for m in messages)


RUNNER = textwrap.dedent(
    """
    import sys, time
    from workflow_scripts.core.io_utils import ResumableJsonl
    from workflow_scripts.persona.answers import answer_prompts
    prompts, model, out = sys.argv[1:4]
    append = ResumableJsonl.append
    def slow_append(self, rows):  # a window for the kill after each written chunk
        append(self, rows)
        time.sleep(float(sys.argv[4]))
    ResumableJsonl.append = slow_append
    settings = {"answers_per_prompt": 2, "max_new_tokens": 24, "temperature": 0.7, "top_p": 0.95,
                "chunk_size": 4, "seed": 0}
    answer_prompts(prompts, model, out, "student", settings, {"kind": "transformers"})
    """
)


@pytest.mark.e2e
def test_student_answers_survive_sigkill(toy_model_dir, tmp_path):  # noqa: F811
    """A real kill (SIGKILL) of the student stage on a toy model, then a resumed run."""
    from workflow_scripts.core.io_utils import write_jsonl_atomic

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl_atomic(
        prompts,
        [
            {"prompt_id": f"t00-p{i:03d}", "trait_index": 0, "prompt": f"Question {i}?"}
            for i in range(16)
        ],
    )
    script = tmp_path / "run.py"
    script.write_text(RUNNER)
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}

    reference = tmp_path / "ref.jsonl"
    subprocess.run(
        [sys.executable, script, prompts, toy_model_dir, reference, "0"], check=True, env=env
    )

    out = tmp_path / "student.jsonl"
    partial = out.with_name("student.jsonl.partial")
    proc = subprocess.Popen([sys.executable, script, prompts, toy_model_dir, out, "2"], env=env)
    deadline = time.time() + 300
    while time.time() < deadline and (
        not partial.exists() or len(partial.read_text().splitlines()) < 8
    ):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    written = len(partial.read_text().splitlines())
    assert written == 8, "killed after two chunks"
    assert not out.exists()

    subprocess.run([sys.executable, script, prompts, toy_model_dir, out, "0"], check=True, env=env)
    rows, expected = lines(out), lines(reference)
    assert len(rows) == 32
    assert len({(r["key"], r["sample_idx"]) for r in rows}) == 32
    assert [(r["key"], r["sample_idx"], r["text"]) for r in rows] == [
        (r["key"], r["sample_idx"], r["text"]) for r in expected
    ]


@pytest.mark.e2e
def test_handed_off_stage_runs_as_a_module_from_a_params_file(toy_model_dir, tmp_path):  # noqa: F811
    """What a vLLM-venv handoff runs: `python -m workflow_scripts.persona.answers PARAMS.json`."""
    from workflow_scripts.core.io_utils import write_jsonl_atomic

    prompts = tmp_path / "prompts.jsonl"
    write_jsonl_atomic(prompts, [{"prompt_id": "t00-p000", "trait_index": 0, "prompt": "Hi?"}])
    params = {
        "prompts_path": str(prompts),
        "model_dir": str(toy_model_dir),
        "out_path": str(tmp_path / "student.jsonl"),
        "role": "student",
        "settings": {
            "answers_per_prompt": 2,
            "max_new_tokens": 4,
            "temperature": 0.7,
            "top_p": 0.95,
            "chunk_size": 4,
            "vllm_chunk_size": 64,
            "seed": 0,
        },
        "engine": {"kind": "transformers"},
        "constitution": None,
        "name": None,
    }
    (tmp_path / "params.json").write_text(json.dumps(params))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    subprocess.run(
        [sys.executable, "-m", "workflow_scripts.persona.answers", str(tmp_path / "params.json")],
        check=True, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert [(r["key"], r["sample_idx"]) for r in lines(tmp_path / "student.jsonl")] == [
        ("t00-p000", 0),
        ("t00-p000", 1),
    ]
