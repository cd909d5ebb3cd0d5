"""Every documented environment (envs/): its requirement list parses, its conda file and
venv file agree, the test venv has what it lists, and every module its rules import
(walked through the library) is provided by a listed requirement."""

from __future__ import annotations

import re
from importlib import metadata
from pathlib import Path

import pytest

from workflow_scripts.core import envs

REPO = Path(__file__).resolve().parents[1]
MAPPING = metadata.packages_distributions()
# Listed for the GPU cluster, absent from the CPU test venv: Liger's kernels need
# Triton on a GPU (em_training.use_liger_kernel); vLLM lives in its own venv.
NOT_IN_TEST_VENV = {"liger-kernel", "vllm"}


def venv_requirements(env: str) -> list[str]:
    return envs.parse_requirements(envs.ENVS / envs.ENV_FILES[env][1])


def conda_requirements(env: str) -> list[str]:
    return envs.parse_conda_env(envs.ENVS / envs.ENV_FILES[env][0])


@pytest.mark.parametrize("env", sorted(envs.ENV_FILES))
def test_venv_holds_every_module_its_rules_and_snakemake_import(env):
    assert envs.missing_modules(env, venv_requirements(env), MAPPING) == {}


@pytest.mark.parametrize("env", sorted(envs.ENV_FILES))
def test_conda_env_holds_every_module_its_rules_import(env):
    assert envs.missing_modules(env, conda_requirements(env), MAPPING, conda=True) == {}


@pytest.mark.parametrize("env", sorted(envs.ENV_FILES))
def test_conda_file_and_venv_file_agree(env):
    venv = set(venv_requirements(env))
    for runs in envs.VENV_RUNS[env]:
        assert set(conda_requirements(runs)) <= venv, runs
    if env != "train":
        assert set(conda_requirements(env)) == venv


@pytest.mark.parametrize("env", ["train", "analysis"])
def test_test_venv_has_every_listed_requirement(env):
    assert set(envs.not_installed(venv_requirements(env))) <= NOT_IN_TEST_VENV


def test_the_workflow_venv_lists_what_a_cluster_run_needs():
    train = set(venv_requirements("train"))
    assert {
        "snakemake",
        "snakemake-executor-plugin-slurm",
        "scipy",
        "statsmodels",
        "plotnine",
    } <= train


def test_a_dropped_requirement_is_reported_with_its_importers():
    listed = [name for name in venv_requirements("train") if name != "scipy"]
    missing = envs.missing_modules("train", listed, MAPPING)
    assert set(missing) == {"scipy"}
    assert "statistics" in missing["scipy"]
    missing = envs.missing_modules("train", [n for n in listed if n != "snakemake"], MAPPING)
    assert "Snakefile" in missing["snakemake"]


def test_every_rule_with_a_script_has_an_environment():
    scripted = set()
    for smk in (REPO / "rules").glob("*.smk"):
        rule = None
        for line in smk.read_text().splitlines():
            if m := re.match(r"^rule (\w+):", line):
                rule = m.group(1)
            elif rule and line.strip() == "script:":
                scripted.add(rule)
    assert scripted <= set(envs.rule_environments())


def test_requirement_lines_and_includes(tmp_path):
    assert envs.requirement_name("torch==2.13.0") == "torch"
    assert envs.requirement_name("Markdown_It.py>=3 ; python_version>'3'") == "markdown-it-py"
    assert (
        envs.requirement_name("snakemake-executor-plugin-slurm>=2.8,<2.9")
        == "snakemake-executor-plugin-slurm"
    )
    (tmp_path / "base.txt").write_text("# header\nscipy>=1\n")
    (tmp_path / "top.txt").write_text("torch  # the GPU build\n-r base.txt\n\n")
    assert envs.parse_requirements(tmp_path / "top.txt") == ["torch", "scipy"]
    (tmp_path / "bad.txt").write_text("--index-url https://example.org\n")
    with pytest.raises(ValueError, match=r"bad.txt:1"):
        envs.parse_requirements(tmp_path / "bad.txt")


def test_imports_inside_functions_count_and_guarded_ones_are_optional(tmp_path):
    source = tmp_path / "mod.py"
    source.write_text(
        "import os\n"
        "from workflow_scripts.core import grid\n"
        "def f():\n    import torch\n"
        "try:\n    import liger_kernel\nexcept ImportError:\n    pass\n"
    )
    found, project = envs.imports_of(source)
    assert envs.Import("torch", False) in found
    assert envs.Import("liger_kernel", True) in found
    assert {"workflow_scripts.core", "workflow_scripts.core.grid"} <= project
    assert envs.Import("os", False) not in envs.third_party(found)
