"""A model with `gpus: 2` asks for two GPUs of one node in every rule that loads it,
and the SLURM profiles leave that number to the rule (fast: a dry-run and the
profiles' text)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "tests" / "configs" / "ci.yaml"
SNAKEMAKE = Path(sys.executable).with_name("snakemake")


def dry_run_resources(*configfiles: Path) -> dict[str, dict[str, str]]:
    """Rule name -> resources printed by `snakemake -n` (the last job of each rule)."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(SNAKEMAKE), "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile",
         *map(str, configfiles)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=120, check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    resources: dict[str, dict[str, str]] = {}
    rule = None
    for line in result.stdout.splitlines():
        if match := re.match(r"(?:local)?rule (\w+):", line):
            rule = match.group(1)
        elif rule and line.strip().startswith("resources:"):
            items = line.split(":", 1)[1].split(",")
            resources[rule] = dict(item.strip().split("=", 1) for item in items if "=" in item)
    return resources


@pytest.fixture(scope="module")
def two_gpu_overlay(tmp_path_factory) -> Path:
    model = next(iter(yaml.safe_load(CI_CONFIG.read_text())["models"]))
    path = tmp_path_factory.mktemp("overlay") / "two_gpus.yaml"
    path.write_text(yaml.safe_dump({"models": {model: {"gpus": 2}}}))
    return path


def gpu_rules(profile: str) -> set[str]:
    text = (REPO / "profiles" / profile / "config.yaml").read_text()
    if profile == "leonardo":
        block = re.search(r"GPU_RULES = \[(.*?)\]", text, re.S).group(1)
        return set(re.findall(r'"(\w+)"', block))
    placed = yaml.safe_load(text)["set-resources"]
    return {rule for rule, res in placed.items() if res.get("cpus_per_gpu")}


def test_rules_of_a_two_gpu_model_ask_for_two_gpus_on_one_node(two_gpu_overlay):
    resources = dry_run_resources(CI_CONFIG, two_gpu_overlay)
    # The GPU rules that load the grid model (the judge's GPUs follow the judge model).
    on_gpu = {rule: res for rule, res in resources.items() if rule in gpu_rules("leonardo")}
    assert {"em_sft", "sample_persona", "persona_dpo"} <= on_gpu.keys()
    for rule, res in on_gpu.items():
        assert (res["gpu"], res["nodes"]) == ("2", "1"), (rule, res)


def test_a_model_without_gpus_keeps_one_gpu_per_job():
    resources = dry_run_resources(CI_CONFIG)
    on_gpu = {rule: res for rule, res in resources.items() if rule in gpu_rules("leonardo")}
    assert on_gpu and all(res["gpu"] == "1" for res in on_gpu.values()), on_gpu


@pytest.mark.parametrize("profile", ["leonardo", "slurm"])
def test_profiles_leave_the_gpu_count_to_the_rule_and_keep_one_node(profile):
    import yte

    env = {"PERSONA_EM_ACCOUNT": "test"}
    saved = dict(os.environ)
    try:
        os.environ.update(env)
        with open(REPO / "profiles" / profile / "config.yaml") as stream:
            placed = yte.process_yaml(stream, require_use_yte=False)["set-resources"]
    finally:
        os.environ.clear()
        os.environ.update(saved)
    rules = gpu_rules(profile)
    assert {"em_sft", "sample_persona", "persona_dpo"} <= rules
    for rule in rules:
        assert "gpu" not in placed[rule], f"profiles/{profile}: {rule} overrides the rule's GPUs"
        assert "cpus_per_task" not in placed[rule], rule  # else --cpus-per-gpu is ignored
        assert placed[rule]["nodes"] == 1
        assert placed[rule]["cpus_per_gpu"] == 8


FULL_CONFIG = REPO / "config" / "config.yaml"


def jobs_by_model(configfile: Path, *extra: str) -> dict[tuple[str, str], set[str]]:
    """(rule, model wildcard) -> the `gpu` values of its jobs in a dry-run."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run(
        [str(SNAKEMAKE), "-n", "--snakefile", str(REPO / "Snakefile"), "--configfile",
         str(configfile), *extra],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    jobs: dict[tuple[str, str], set[str]] = {}
    for block in re.split(r"\n(?=(?:local)?rule \w+:)", result.stdout):
        rule = re.match(r"(?:local)?rule (\w+):", block)
        model = re.search(r"wildcards: .*?\bmodel=([\w.-]+)", block)
        gpu = re.search(r"resources: .*?\bgpu=(\d+)", block)
        if rule and model:
            jobs.setdefault((rule.group(1), model.group(1)), set()).add(gpu.group(1) if gpu else "0")
    return jobs


def test_scale_block_is_shown_only_when_included_and_asks_for_its_gpus():
    scale = yaml.safe_load(FULL_CONFIG.read_text())["scale"]["models"]
    included = jobs_by_model(FULL_CONFIG, "--config", "include_scale=true")
    for model, entry in scale.items():
        for rule in ("em_sft", "sample_persona", "persona_dpo"):
            assert included[(rule, model)] == {str(entry["gpus"])}, (rule, model)
    assert {model for _, model in included} == set(scale)
    default = jobs_by_model(FULL_CONFIG)
    assert default and not {model for _, model in default} & set(scale)


def test_scale_block_replaces_models_and_personas_and_updates_other_sections():
    from workflow_scripts.core.config_checks import ConfigError, apply_scale_study

    def config(flag):
        return {
            "include_scale": flag,
            "models": {"small": {}}, "personas": {"released_one": {}},
            "statistics": {"alpha": 0.05, "hypotheses": {"H2": ["loving"]}},
            "scale": {"models": {"big": {"gpus": 4}}, "personas": {"goodness": {}},
                      "statistics": {"hypotheses": {"H2": ["goodness"]}}},
        }  # fmt: skip

    untouched = config(False)
    apply_scale_study(untouched)
    assert untouched == config(False)
    scaled = config("true")
    apply_scale_study(scaled)
    assert scaled["include_scale"] is True
    assert scaled["models"] == {"big": {"gpus": 4}} and scaled["personas"] == {"goodness": {}}
    assert scaled["statistics"] == {"alpha": 0.05, "hypotheses": {"H2": ["goodness"]}}
    with pytest.raises(ConfigError, match="include_scale: expected true or false, found 'yes please'"):
        apply_scale_study(config("yes please"))
    empty = {**config(True), "scale": {"models": {"big": {}}}}
    with pytest.raises(ConfigError, match="`scale` must give models and personas"):
        apply_scale_study(empty)
