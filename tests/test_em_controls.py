"""The controls are in the grid (docs/methods.md, The grid and its controls): the base
model without EM, each persona model without EM, and base + EM (persona `baseline`),
evaluated like every other cell. Checked on the DAG that Snakemake builds (dry run)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]


def dry_run_jobs(*args: str) -> list[dict]:
    """Jobs of `snakemake -n --forceall` as {rule, input, output, wildcards} dicts."""
    result = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--forceall", "--cores", "1", *args],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = []
    for block in re.split(r"\n(?=(?:localrule|rule) \w+:)", result.stdout):
        head = re.match(r"(?:localrule|rule) (\w+):", block)
        if not head:
            continue
        fields = dict(re.findall(r"^\s+(input|output|wildcards): (.*)$", block, re.M))
        jobs.append({
            "rule": head.group(1),
            "input": fields.get("input", "").split(", "),
            "output": fields.get("output", "").split(", "),
            "wildcards": dict(kv.split("=", 1) for kv in fields.get("wildcards", "").split(", ") if "=" in kv),
        })
    return jobs


@pytest.fixture(scope="module")
def offline_jobs() -> list[dict]:
    return dry_run_jobs()


def test_embedded_default_includes_the_controls():
    config = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
    assert config["controls"] is True
    assert config["personas"]["baseline"]["source"] == "none"
    assert any(p["source"] != "none" for p in config["personas"].values())
    full = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    assert full["controls"] is True and full["personas"]["baseline"]["source"] == "none"


def test_every_persona_is_judged_without_em_and_with_each_dataset(offline_jobs):
    config = yaml.safe_load((REPO / "config" / "offline.yaml").read_text())
    judged = {o for j in offline_jobs for o in j["output"] if "/judged/" in o}
    for persona in config["personas"]:
        for dataset in ["none", *config["datasets"]]:
            assert f"results/smollm2-135m/judged/{persona}/{dataset}.parquet" in judged


def test_baseline_is_the_base_model_and_personas_are_folded(offline_jobs):
    base = "results/smollm2-135m/base/model"
    sampling = {j["wildcards"]["persona"]: j for j in offline_jobs if j["rule"] == "sample_persona"}
    # base model, no EM: the baseline's sampling job reads the base model itself
    assert base in sampling["baseline"]["input"]
    assert not any("/persona/" in i for i in sampling["baseline"]["input"])
    # each persona model without EM: sampled from its folded model
    for persona in ("goodness", "sycophancy"):
        assert f"results/smollm2-135m/persona/{persona}/model" in sampling[persona]["input"]
        assert base not in sampling[persona]["input"]
    training = [j for j in offline_jobs if j["rule"] == "em_sft"]
    assert len(training) == 3 * 2  # personas x datasets x 1 seed
    for job in training:
        persona = job["wildcards"]["persona"]
        start = base if persona == "baseline" else f"results/smollm2-135m/persona/{persona}/model"
        assert start in job["input"], job  # base + EM for baseline, persona + EM otherwise
    folded = {j["wildcards"]["persona"] for j in offline_jobs if j["rule"] == "fold_persona"}
    assert folded == {"goodness", "sycophancy"}


def test_more_seeds_are_more_training_runs(tmp_path):
    seeds = tmp_path / "seeds.yaml"
    seeds.write_text("seeds: [0, 1, 2]\n")
    jobs = dry_run_jobs("--configfile", "config/offline.yaml", str(seeds))
    runs = {(j["wildcards"]["persona"], j["wildcards"]["dataset"], j["wildcards"]["seed"])
            for j in jobs if j["rule"] == "em_sft"}
    assert len(runs) == 3 * 2 * 3
    assert {seed for *_, seed in runs} == {"0", "1", "2"}
