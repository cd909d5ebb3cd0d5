"""The persona part of the workflow, read from the session's reduced study (fixture
`ci_run`, tests/configs/ci.yaml): every constitution persona from prompt expansion
through introspection to the combined adapter, folded, and the persona check.
Checked by content."""

from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.e2e


def constitution_personas(config: dict) -> list[str]:
    return [name for name, entry in config["personas"].items() if entry["source"] == "constitution"]


@pytest.fixture(scope="module")
def persona_run(ci_run) -> tuple:
    personas = constitution_personas(ci_run.config)
    assert personas, "the reduced study trains at least one persona from a constitution"
    (model,) = ci_run.config["models"]
    return ci_run.workdir, model, personas, ci_run.config


def test_offline_persona_pipeline_for_every_constitution_persona(persona_run):
    workdir, model, personas, config = persona_run
    for persona in personas:
        root = workdir / "results" / model / "persona" / persona
        report = json.loads((root / "pairs_report.json").read_text())
        unfinished = config["persona_training"]["unfinished_answers"]
        assert report["pairs"] > 0 and report["unfinished_policy"] == unfinished
        pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
        assert all(p["chosen"][0] == p["rejected"][0] for p in pairs)
        transcripts = [json.loads(line) for line in (root / "introspection.jsonl").read_text().splitlines()]
        assert {t["kind"] for t in transcripts} == {"reflection", "interaction"}
        assert all(t["messages"][-1]["role"] == "assistant" for t in transcripts)
        combination = json.loads((root / "adapter" / "persona_combination.json").read_text())
        assert (combination["dpo_weight"], combination["sft_weight"]) == (1.0, 0.25)
        sft = json.loads((root / "sft" / "adapter" / "persona_training.json").read_text())
        assert sft["data"]["examples"] == len(transcripts)
        assert sft["dpo_adapter_sha256"] == combination["dpo_adapter"]["weights_sha256"]
    header, *lines = (workdir / "results" / model / "persona_check.tsv").read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    assert sorted(r["persona"] for r in rows) == sorted(personas)
    assert all(float(r["kl_mean"]) > 0 and r["flag"] for r in rows)
