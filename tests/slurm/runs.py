"""Running Snakemake through the test cluster (tests/slurm/cluster.py) and reading
what it did from `sacct`: shared by tests/test_slurm.py and the reduced study that
tests/conftest.py runs once per session (`ci_run`)."""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.slurm.cluster import ACCOUNT, SlurmCluster, die_with_parent

REPO = Path(__file__).resolve().parents[2]
LEONARDO = REPO / "profiles" / "leonardo"
CI_OVERLAY = REPO / "tests" / "slurm" / "profile"
PER_MODEL = "per model"


ATTEMPTS = (1, 2, 3)  # profiles/leonardo: retries 2


def per_attempt(resource) -> dict[int, object]:
    """A rule's resource on each attempt (the rules' helpers take (wildcards, attempt))."""
    if resource.is_evaluable():
        return {a: resource._evaluator(None, a) for a in ATTEMPTS}
    return dict.fromkeys(ATTEMPTS, resource.value)


@functools.cache
def workflow_rules(configfile: Path) -> dict[str, dict[str, int]]:
    """Each rule of the real workflow with its `gpu` and `internet` resources (constant,
    or PER_MODEL where the value is the model's `gpus`), its threads, and its `mem_mb`
    and `runtime` per attempt."""
    from snakemake.api import ConfigSettings, ResourceSettings, SnakemakeApi
    from snakemake.settings.types import OutputSettings

    declared = {}
    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=REPO / "Snakefile",
            workdir=REPO,
        )._workflow
        for rule in workflow.rules:
            values = {}
            for name in ("gpu", "internet"):
                resource = rule.resources.get(name)
                evaluable = resource is not None and resource.is_evaluable()
                values[name] = 0 if resource is None else PER_MODEL if evaluable else resource.value
            values["threads"] = rule.resources["_cores"].value
            for name in ("mem_mb", "runtime"):
                if rule.resources.get(name).name:  # a missing one comes back unnamed
                    values[name] = per_attempt(rule.resources[name])
            declared[rule.name] = values
    return declared


def snakemake_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    env = cluster.env
    unset = ("PERSONA_EM_QOS", "PERSONA_EM_INTERNET_RULES", "SNAKEMAKE_PROFILE")
    for name in (*unset, "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    env["PERSONA_EM_ACCOUNT"] = ACCOUNT
    env.update(extra)
    return env


def snakemake_command(snakefile: Path, configfile: Path | list[Path], *args: str) -> list[str]:
    """Config files come last but for `args`: pass targets after a flag (a bare word
    after the config files would be read as another config file)."""
    configfiles = configfile if isinstance(configfile, list) else [configfile]
    return [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(snakefile),
        "--profile",
        str(LEONARDO),
        "--profile",
        str(CI_OVERLAY),
        "--configfile",
        *map(str, configfiles),
        *args,
    ]


class Run:
    """A Snakemake process; stopped with SIGINT (SIGTERM does not stop it while it
    waits on cluster jobs), then SIGKILL, by its PID only."""

    def __init__(self, argv: list[str], workdir: Path, env: dict[str, str], log: Path):
        self.log = log
        self._log_file = open(log, "w")  # noqa: SIM115
        self.proc = subprocess.Popen(
            argv,
            cwd=workdir,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            # should pytest die, Snakemake gets the SIGINT that makes it cancel its jobs
            preexec_fn=die_with_parent(signal.SIGINT),
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            pytest.fail(f"snakemake ran over {timeout:.0f} s:\n{self.tail()}")
        except BaseException:  # an interrupted test must not leave Snakemake behind
            self.stop()
            raise
        finally:
            self._log_file.close()

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        os.kill(self.proc.pid, signal.SIGINT)
        try:
            self.proc.wait(90)
        except subprocess.TimeoutExpired:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def tail(self, lines: int = 60) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


def run_snakemake(argv, workdir, env, log, timeout) -> Run:
    run = Run(argv, workdir, env, log)
    code = run.wait(timeout)
    assert code == 0, f"snakemake exited with {code}:\n{run.tail()}"
    return run


def slurm_jobs(cluster: SlurmCluster, since: set[str] = frozenset()) -> list[dict[str, str]]:
    jobs = cluster.sacct(
        "JobIDRaw", "Comment", "Partition", "QOS", "Account", "AllocTRES", "State", "Timelimit"
    )
    return [job for job in jobs if job["JobIDRaw"] not in since]


def rule_of(job: dict[str, str]) -> str:
    """The rule of a SLURM job, from the executor's comment `rule_<rule>[_wildcards_...]`."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def wait_for_running(cluster, wanted, before: set[str], timeout: float) -> str:
    """The id of the first running SLURM job whose comment is `wanted` (a string or
    a predicate on the comment), not one of `before`."""
    matches = wanted if callable(wanted) else wanted.__eq__
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        out = subprocess.run(
            ["squeue", "-h", "-o", "%i|%k|%T"], env=cluster.env, capture_output=True, text=True
        ).stdout
        for line in out.splitlines():
            job_id, comment, state = line.split("|")
            if state == "RUNNING" and job_id not in before and matches(comment):
                return job_id
        time.sleep(0.5)
    pytest.fail(f"no running SLURM job matching {wanted} within {timeout:.0f} s")


def cancel_a_running_job(cluster, rules: set[str], before: set[str]) -> str:
    """Cancel the first job of one of `rules` seen running; its id. A job that ends
    before the cancel reaches it is passed over for the next one."""
    passed_over = set(before)
    for _ in range(5):
        victim = wait_for_running(
            cluster, lambda comment: rule_of({"Comment": comment}) in rules, passed_over, 900
        )
        subprocess.run(["scancel", victim], env=cluster.env, capture_output=True)
        time.sleep(1)
        state = subprocess.run(
            ["squeue", "-h", "--states=all", "-j", victim, "-o", "%T"],
            env=cluster.env,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if state == "CANCELLED":
            return victim
        passed_over.add(victim)
    pytest.fail("could not cancel a running GPU job")
