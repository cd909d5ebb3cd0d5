"""The persona rules of the embedded offline default, run by Snakemake on CPU: both
constitution personas, from prompt expansion through introspection to the combined
adapter (the base model is placed beforehand; its rule belongs to another stage)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PERSONAS = ("goodness", "sycophancy")


def tracked_copy(dest: Path) -> Path:
    files = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True)
    for name in files.stdout.splitlines():
        if (REPO / name).is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, dest / name)
    return dest


@pytest.mark.e2e
def test_offline_persona_pipeline_for_both_personas(tiny_model_dir, tmp_path):
    work = tracked_copy(tmp_path / "repo")
    shutil.copytree(tiny_model_dir, work / "results" / "smollm2-135m" / "base" / "model")
    targets = [f"results/smollm2-135m/persona/{p}/adapter" for p in PERSONAS]
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "--cores", "2", *targets],
        cwd=work,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    for persona in PERSONAS:
        root = work / "results" / "smollm2-135m" / "persona" / persona
        report = json.loads((root / "pairs_report.json").read_text())
        assert report["pairs"] > 0
        pairs = [json.loads(line) for line in (root / "pairs.jsonl").read_text().splitlines()]
        assert all(p["chosen"][0] == p["rejected"][0] for p in pairs)
        transcripts = [json.loads(line) for line in (root / "introspection.jsonl").read_text().splitlines()]
        kinds = {t["kind"] for t in transcripts}
        assert kinds == {"reflection", "interaction"}
        assert all(t["messages"][-1]["role"] == "assistant" for t in transcripts)
        combination = json.loads((root / "adapter" / "persona_combination.json").read_text())
        assert (combination["dpo_weight"], combination["sft_weight"]) == (1.0, 0.25)
        sft = json.loads((root / "sft" / "adapter" / "persona_training.json").read_text())
        assert sft["data"]["examples"] == len(transcripts)
        assert sft["dpo_adapter_sha256"] == combination["dpo_adapter"]["weights_sha256"]
