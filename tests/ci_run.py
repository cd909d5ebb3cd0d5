"""The reduced study (tests/configs/ci.yaml), run once per test session and read by
content by the end-to-end, persona-workflow and SLURM checks (fixture `ci_run` in
tests/conftest.py).

Where the test cluster can start (tests/slurm/cluster.py) the run goes through SLURM
with profiles/leonardo, GPU rules on the debug QOS, and the first GPU job seen running
is cancelled so the retry can be checked; elsewhere Snakemake runs locally on 2 cores.
`PERSONA_EM_CI_RUN=local` or `=slurm` picks one (`slurm` fails where the cluster cannot
start instead of falling back)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
CI_CONFIG = REPO / "tests" / "configs" / "ci.yaml"
MODE_ENV = "PERSONA_EM_CI_RUN"
MODES = ("local", "slurm")
RUN_TIMEOUT_S = 3600


@dataclass
class SlurmStudy:
    """What the SLURM run of the reduced study did, for the SLURM-specific checks."""

    cluster: object  # tests.slurm.cluster.SlurmCluster
    env: dict[str, str]
    jobs: list[dict[str, str]]  # sacct rows of this run's jobs
    victim: str  # id of the cancelled GPU job
    gpu_rules: set[str]


@dataclass
class CiRun:
    """A finished run of the reduced study: its working directory, how it ran, and
    `snakemake(...)` to run Snakemake again the same way in the same directory."""

    workdir: Path
    mode: str  # "local" or "slurm"
    config: dict
    seconds: float
    slurm: SlurmStudy | None = field(default=None)

    def snakemake(self, *args: str, timeout: int = 600) -> subprocess.CompletedProcess:
        if self.slurm is None:
            return subprocess.run(
                local_command(self.workdir, *args),
                capture_output=True,
                text=True,
                timeout=timeout,
                env=local_env(),
            )
        from tests.slurm.runs import snakemake_command

        return subprocess.run(
            snakemake_command(REPO / "Snakefile", CI_CONFIG, *args),
            cwd=self.workdir,
            capture_output=True,
            text=True,
            timeout=timeout,
            env=self.slurm.env,
        )


def chosen_mode(cluster_missing: list[str]) -> str:
    """`local` or `slurm` from PERSONA_EM_CI_RUN (unset: slurm where the cluster can start)."""
    wanted = os.environ.get(MODE_ENV, "").strip().lower()
    if wanted and wanted not in MODES:
        raise ValueError(f"{MODE_ENV}={wanted!r}: expected one of {', '.join(MODES)} or unset")
    if wanted == "slurm" and cluster_missing:
        raise RuntimeError(
            f"{MODE_ENV}=slurm but the test cluster cannot start: " + "; ".join(cluster_missing)
        )
    return wanted or ("local" if cluster_missing else "slurm")


def local_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}


def local_command(workdir: Path, *args: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(REPO / "Snakefile"),
        "--directory",
        str(workdir),
        "--configfile",
        str(CI_CONFIG),
        "--cores",
        "2",
        *args,
    ]


def job_logs(workdir: Path, chars: int = 12000) -> str:
    logs = "\n".join(
        f"--- {log}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted((workdir / "logs").rglob("*.log"))
    )
    return logs[-chars:]


def prepare_workdir(workdir: Path) -> None:
    # config paths (constitutions, datasets, questions) are relative to the working directory
    (workdir / "resources").symlink_to(REPO / "resources")


def run_local(workdir: Path) -> CiRun:
    prepare_workdir(workdir)
    started = time.monotonic()
    result = subprocess.run(
        local_command(workdir),
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        env=local_env(),
    )
    if result.returncode != 0:
        pytest.fail(f"workflow failed:\n{result.stderr[-6000:]}\n{job_logs(workdir)}")
    config = yaml.safe_load(CI_CONFIG.read_text())
    return CiRun(workdir, "local", config, time.monotonic() - started)


def run_slurm(workdir: Path, cluster) -> CiRun:
    from tests.slurm.cluster import DEBUG_QOS
    from tests.slurm.runs import (
        Run,
        cancel_a_running_job,
        slurm_jobs,
        snakemake_command,
        snakemake_env,
        workflow_rules,
    )

    prepare_workdir(workdir)
    env = snakemake_env(cluster, PERSONA_EM_QOS=DEBUG_QOS)
    gpu_rules = {name for name, res in workflow_rules(CI_CONFIG).items() if res["gpu"]}
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    started = time.monotonic()
    run = Run(snakemake_command(REPO / "Snakefile", CI_CONFIG), workdir, env, workdir / "run.log")
    try:
        victim = cancel_a_running_job(cluster, gpu_rules, before)
        code = run.wait(RUN_TIMEOUT_S)
    finally:
        run.stop()
    if code != 0:
        pytest.fail(f"snakemake exited with {code}:\n{run.tail()}\n{job_logs(workdir, 8000)}")
    seconds = time.monotonic() - started
    study = SlurmStudy(cluster, env, slurm_jobs(cluster, since=before), victim, gpu_rules)
    return CiRun(workdir, "slurm", yaml.safe_load(CI_CONFIG.read_text()), seconds, study)
