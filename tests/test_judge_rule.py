"""Rule `judge` in the DAG: inputs, outputs and resources for each judge kind (dry runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.judge_support import REPO

TARGET = "results/smollm2-135m/judged/baseline/none.parquet"


def _dry_run(tmp_path, judge: dict) -> str:
    config = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
    config["judge"] = judge
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", TARGET, "-n", "--snakefile", str(REPO / "Snakefile"),
         "-d", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    block = result.stdout.split("rule judge:")[1].split("\n\n")[0]
    return block


@pytest.mark.parametrize(
    ("judge", "model_input", "resources"),
    [
        ({"kind": "local", "model": "smollm2-135m", "api_key_env": None}, True, "gpu=0, internet=0"),
        ({"kind": "openai", "model": "gpt-4.1-mini"}, False, "gpu=0, internet=1"),
        ({"kind": "vllm_server", "model": "smollm2-135m", "api_key_env": None}, True, "gpu=1, internet=0"),
        ({"kind": "vllm_server", "model": "judge", "api_key_env": None,
          "server": {"hf_id": "Qwen/Qwen2.5-7B-Instruct"}}, False, "gpu=1, internet=0"),
    ],
)  # fmt: skip
def test_each_judge_kind_gets_its_model_and_resources(tmp_path, judge, model_input, resources):
    block = _dry_run(tmp_path, judge)
    inputs = block.split("input: ")[1].split("\n")[0]
    assert ("results/smollm2-135m/base/model" in inputs) == model_input
    assert "results/smollm2-135m/samples/baseline.parquet" in inputs
    assert "output: results/smollm2-135m/judged/baseline/none.parquet, results/smollm2-135m/judged/baseline/none.summary.json" in block
    assert resources in block
