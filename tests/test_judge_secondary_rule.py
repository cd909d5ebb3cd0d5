"""Rule `judge_secondary` in the DAG: inputs, outputs and resources of a secondary judge
for each judge kind, and the agreement and robustness rules it feeds (dry runs)."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from tests.judge_support import REPO


def _dry_run(tmp_path, judge: dict, *targets: str) -> subprocess.CompletedProcess:
    config = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
    config["judges"] = {"secondary": {"second": {"judge": judge, "subsample": {"share": 0.2}}}}
    shutil.copytree(REPO / "resources", tmp_path / "resources")
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "snakemake", *targets, "-n", "--snakefile", str(REPO / "Snakefile"),
         "-d", str(tmp_path), "--configfile", str(tmp_path / "config.yaml")],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


@pytest.mark.parametrize(
    ("judge", "model_input", "resources"),  # vllm_server: as local, with gpu=1 (test_judge_rule.py)
    [
        ({"kind": "local", "model": "smollm2-135m", "api_key_env": None}, True, "gpu=0, internet=0"),
        ({"kind": "openai", "model": "gpt-4o-2024-08-06"}, False, "gpu=0, internet=1"),
    ],
)  # fmt: skip
def test_a_secondary_judge_gets_its_kinds_model_and_resources(tmp_path, judge, model_input, resources):
    result = _dry_run(tmp_path, judge)  # every final target
    assert result.returncode == 0, result.stderr[-2000:]
    assert "results/final/judges/second/agreement.csv" in result.stdout
    report = result.stdout.split("rule results_report:")[1].split("\n\n")[0]
    assert "results/final/judges/robustness.csv" in report
    blocks = [b.split("\n\n")[0] for b in result.stdout.split("rule judge_secondary:")[1:]]
    assert blocks
    for block in blocks:  # in whatever order the dry run lists them
        inputs = block.split("input: ")[1].split("\n")[0]
        wildcards = dict(w.split("=", 1) for w in block.split("wildcards: ")[1].split("\n")[0].split(", "))
        primary = f"results/{wildcards['model']}/judged/{wildcards['persona']}/{wildcards['dataset']}.parquet"
        assert primary in inputs  # the primary's scores of the same condition
        assert ("results/smollm2-135m/base/model" in inputs) == model_input
        assert resources in block and "judge=second" in block


def test_a_bad_secondary_judge_is_a_config_error_naming_it(tmp_path):
    result = _dry_run(tmp_path, {"kind": "gpt", "model": "x"})
    assert result.returncode != 0
    assert "judges.secondary.second.judge.kind: unknown judge kind 'gpt'" in result.stderr + result.stdout
