"""The persona part of the embedded offline default, run by Snakemake on CPU: both
constitution personas from prompt expansion through introspection to the combined
adapter, folded, and the persona check. Checked by content."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PERSONAS = ("goodness", "sycophancy")
MODEL = "smollm2-135m"


@pytest.mark.e2e
def test_offline_persona_pipeline_for_both_personas(tmp_path):
    (tmp_path / "resources").symlink_to(REPO / "resources")
    command = [
        sys.executable, "-m", "snakemake",
        "--snakefile", str(REPO / "Snakefile"),
        "--directory", str(tmp_path),
        "--configfile", str(REPO / "config" / "offline.yaml"),
        "--cores", "2",
        f"results/{MODEL}/persona_check.tsv",
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=3600)
    if result.returncode != 0:
        logs = "\n".join(f"--- {p}\n{p.read_text()[-2000:]}" for p in sorted((tmp_path / "logs").rglob("*.log")))
        pytest.fail(f"workflow failed:\n{result.stderr[-4000:]}\n{logs[-10000:]}")
    for persona in PERSONAS:
        root = tmp_path / "results" / MODEL / "persona" / persona
        report = json.loads((root / "pairs_report.json").read_text())
        assert report["pairs"] > 0 and report["unfinished_policy"] == "trim"
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
    header, *lines = (tmp_path / "results" / MODEL / "persona_check.tsv").read_text().splitlines()
    rows = [dict(zip(header.split("\t"), line.split("\t"), strict=True)) for line in lines]
    assert sorted(r["persona"] for r in rows) == sorted(PERSONAS)
    assert all(float(r["kl_mean"]) > 0 and r["flag"] for r in rows)
