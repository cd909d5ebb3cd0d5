"""SLURM execution.

Fast tests: profiles/leonardo places every rule of the full study where its declared
needs (gpu, internet) can be met, within the partitions' limits, and reads the account
and QOS from the environment.

`slurm` tests: a two-node SLURM cluster (tests/slurm/cluster.py: munge, MariaDB,
slurmdbd, slurmctld, two slurmd; a fake Leonardo booster node with four fake GPUs and no
internet, in a network namespace, and a serial node) runs workflows through the SLURM
executor with profiles/leonardo itself, plus the small overlay tests/slurm/profile
(concurrency and polling only). Checked in `sacct`: every non-local job ran as a SLURM
job where the profile placed it, GPU rules got a GPU; GPU jobs reach no remote address,
serial jobs do; a rerun has nothing to do; a cancelled job is retried and the workflow
finishes. The synthetic workflow in tests/slurm/workflow checks the machinery in about
two minutes; the reduced study (tests/configs/ci.yaml, judged through a remote stand-in
only the serial node reaches) runs the real DAG.
"""

from __future__ import annotations

import functools
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.slurm import remote_judge as remote
from tests.slurm.cluster import (
    ACCOUNT,
    DEBUG_QOS,
    SlurmCluster,
    die_with_parent,
    missing_requirements,
)

REPO = Path(__file__).resolve().parents[1]
LEONARDO = REPO / "profiles" / "leonardo"
DEFAULT_PROFILE = REPO / "profiles" / "default"
CI_OVERLAY = REPO / "tests" / "slurm" / "profile"
SYNTHETIC = REPO / "tests" / "slurm" / "workflow"
CI_CONFIG = REPO / "tests" / "configs" / "ci.yaml"
FULL_CONFIG = REPO / "config" / "config.yaml"

SERIAL_MAX_MEM_MB = 30_800
SERIAL_MAX_MINUTES = 4 * 60
NODE_MEM_MB = 494_000
PER_MODEL = "per model"
PLACEMENT_KEYS = {"executor", "default-resources", "set-resources", "configfile"}


# ---------------------------------------------------------------- profile helpers
def load_profile(profile_dir: Path, env: dict[str, str] | None = None) -> dict:
    """A profile as Snakemake reads it (YTE templating included), under `env`."""
    import yte

    saved = dict(os.environ)
    try:
        os.environ.update(env or {})
        for name in ("PERSONA_EM_QOS",):
            if env is None or name not in env:
                os.environ.pop(name, None)
        with open(profile_dir / "config.yaml") as stream:
            return yte.process_yaml(stream, require_use_yte=False)
    finally:
        os.environ.clear()
        os.environ.update(saved)


def rule_names(profile: dict) -> dict[str, set[str]]:
    """Rules placed by the profile, by partition (and `gpu` for the GPU rules)."""
    placed: dict[str, set[str]] = {}
    for rule, resources in profile["set-resources"].items():
        gpu = resources.get("gpu") or resources.get("cpus_per_gpu")
        key = resources["slurm_partition"] + ("+gpu" if gpu else "")
        placed.setdefault(key, set()).add(rule)
    return placed


def evaluate(expression, attempt: int):
    """A profile resource value as Snakemake evaluates it (a Python expression of
    `attempt`, or a plain string)."""
    if not isinstance(expression, str):
        return expression
    try:
        return eval(expression, {"attempt": attempt})
    except (NameError, SyntaxError):
        return expression


def minutes(runtime) -> int:
    from snakemake.resources import Resource

    return Resource.parse_human_friendly("runtime", runtime)


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


# ---------------------------------------------------------------- fast tests
@pytest.fixture(scope="module")
def leonardo() -> dict:
    return load_profile(LEONARDO, {"PERSONA_EM_ACCOUNT": "IscrC_test"})


@pytest.fixture(scope="module")
def full_study_rules() -> dict[str, dict[str, int]]:
    if not FULL_CONFIG.exists():
        pytest.skip(f"{FULL_CONFIG} not present")
    return workflow_rules(FULL_CONFIG)


def test_leonardo_places_every_rule_of_the_full_study(leonardo, full_study_rules):
    placed = set(leonardo["set-resources"])
    unplaced = sorted(set(full_study_rules) - placed - {"all"})
    assert not unplaced, (
        f"profiles/leonardo/config.yaml: rules {unplaced} are not placed; add each to "
        "GPU_RULES, INTERNET_RULES or CPU_RULES"
    )


def test_leonardo_sends_rules_that_declare_a_gpu_to_the_gpu_partition(leonardo, full_study_rules):
    declares_gpu = {name for name, res in full_study_rules.items() if res["gpu"]}
    assert declares_gpu, "the full study has GPU rules"
    assert rule_names(leonardo)["boost_usr_prod+gpu"] == declares_gpu
    for rule in declares_gpu:
        resources = leonardo["set-resources"][rule]
        # The rule says how many GPUs (its model's `gpus`); the profile keeps them on one
        # node with 8 cores each.
        assert "gpu" not in resources
        assert resources["nodes"] == 1
        assert resources["cpus_per_gpu"] == 8


def test_leonardo_sends_rules_that_declare_internet_to_the_serial_partition(
    leonardo, full_study_rules
):
    needs_internet = {name for name, res in full_study_rules.items() if res["internet"]}
    assert {"base_model", "em_dataset", "eval_questions", "released_adapter"} <= needs_internet
    on_serial = rule_names(leonardo)["lrd_all_serial"]
    assert needs_internet <= on_serial
    # The full study judges through an API: the judging rules need the internet, and the
    # persona check's GPU part is a rule of its own.
    assert {"judge", "persona_check", "h4_judge"} <= needs_internet <= on_serial
    assert "persona_probe" in rule_names(leonardo)["boost_usr_prod+gpu"]


def leonardo_request(leonardo, full_study_rules, rule: str, name: str, attempt: int):
    """What a job of `rule` asks for on Leonardo: the profile's value, else the rule's."""
    resources = leonardo["set-resources"][rule]
    if name in resources:
        return evaluate(resources[name], attempt)
    if name == "cpus_per_task":
        return full_study_rules[rule]["threads"]
    return full_study_rules[rule][name][attempt]


def test_leonardo_requests_fit_the_partitions_on_every_attempt(leonardo, full_study_rules):
    for rule, resources in leonardo["set-resources"].items():
        for attempt in ATTEMPTS:
            mem = leonardo_request(leonardo, full_study_rules, rule, "mem_mb", attempt)
            runtime = minutes(leonardo_request(leonardo, full_study_rules, rule, "runtime", attempt))
            if resources["slurm_partition"] == "lrd_all_serial":
                assert mem <= SERIAL_MAX_MEM_MB, (rule, attempt, mem)
                assert runtime <= SERIAL_MAX_MINUTES, (rule, attempt, runtime)
                cpus = leonardo_request(leonardo, full_study_rules, rule, "cpus_per_task", attempt)
                assert cpus <= 4, (rule, cpus)
                assert resources["qos"] == "normal"
            else:
                assert mem <= NODE_MEM_MB, (rule, attempt, mem)


# serial rules that load a model on the CPU (a GGUF conversion; combining adapters)
SERIAL_MODEL_RULES = {"base_model", "persona_adapter"}


def test_leonardo_retries_grow_runtime_always_and_memory_only_where_a_model_is_loaded(
    leonardo, full_study_rules
):
    serial_grows = set()
    for rule, resources in leonardo["set-resources"].items():
        runtime = [
            minutes(leonardo_request(leonardo, full_study_rules, rule, "runtime", a))
            for a in ATTEMPTS
        ]
        assert runtime[1] > runtime[0], (rule, runtime)
        mem = [leonardo_request(leonardo, full_study_rules, rule, "mem_mb", a) for a in ATTEMPTS]
        if resources["slurm_partition"] == "lrd_all_serial":
            if mem[1] > mem[0]:
                serial_grows.add(rule)
        else:
            assert mem[1] > mem[0], (rule, mem)
    # the full study's judge is an API (judge.kind openai): its jobs never load a model
    assert serial_grows == SERIAL_MODEL_RULES


def test_serial_rules_ask_for_what_they_use(leonardo, full_study_rules):
    serial = rule_names(leonardo)["lrd_all_serial"]
    for rule in ("judge", "persona_check", "h4_judge"):
        # an API judge waits on the network: one core and a few GB
        assert full_study_rules[rule]["threads"] == 1
        assert full_study_rules[rule]["mem_mb"][1] <= 4_000
    for rule in serial - SERIAL_MODEL_RULES:
        assert full_study_rules[rule]["mem_mb"][3] <= 8_000, rule


def test_leonardo_marks_the_gpu_partition_offline(leonardo):
    for rule, resources in leonardo["set-resources"].items():
        offline = resources["slurm_partition"] == "boost_usr_prod"
        assert resources.get("offline", 0) == int(offline), rule


def test_leonardo_takes_account_from_the_environment_unexpanded(leonardo):
    # Snakemake expands $VARS when it evaluates a resource, in the submitting process.
    assert leonardo["default-resources"]["slurm_account"] == "$PERSONA_EM_ACCOUNT"
    assert leonardo["configfile"] == "config/config.yaml"
    assert leonardo["executor"] == "slurm"
    assert leonardo["retries"] >= 1


def test_leonardo_reads_job_states_with_squeue(leonardo):
    # sacct reports a cancelled job as "CANCELLED by <uid>", which the executor plugin
    # (2.8.0) takes for a running job; see test_cancelled_job_is_retried_...
    assert leonardo["slurm-status-command"] == "squeue"


def test_leonardo_debug_qos_caps_gpu_jobs_at_thirty_minutes():
    normal = load_profile(LEONARDO, {})
    debug = load_profile(LEONARDO, {"PERSONA_EM_QOS": DEBUG_QOS})
    assert normal["set-resources"]["em_sft"]["qos"] == "normal"
    assert "runtime" not in normal["set-resources"]["em_sft"]
    assert debug["set-resources"]["em_sft"]["qos"] == DEBUG_QOS
    assert minutes(debug["set-resources"]["em_sft"]["runtime"]) == 30
    # The serial partition has no debug QOS.
    assert debug["set-resources"]["base_model"]["qos"] == "normal"


def source_leonardo_env(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    script = f"source {LEONARDO / 'env.sh'} && env"
    base = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "USER": "tester"}
    return subprocess.run(
        ["bash", "-c", script], cwd=tmp_path, env={**base, **env}, capture_output=True, text=True
    )


def fake_venv(tmp_path: Path) -> Path:
    """A venv whose activate script only exports VIRTUAL_ENV."""
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f"export VIRTUAL_ENV={venv}\n")
    return venv


def test_leonardo_env_activates_the_venv_and_puts_caches_on_work(tmp_path):
    venv = fake_venv(tmp_path)
    vllm_python = tmp_path / ".venv-vllm" / "bin" / "python"
    vllm_python.parent.mkdir(parents=True)
    vllm_python.write_text("#!/bin/sh\n")
    vllm_python.chmod(0o755)
    work = tmp_path / "work"
    result = source_leonardo_env(
        tmp_path, PERSONA_EM_VENV=str(venv), WORK=str(work), PERSONA_EM_ACCOUNT="IscrC_x"
    )
    assert result.returncode == 0, result.stderr
    env = dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
    assert env["VIRTUAL_ENV"] == str(venv)
    assert env["HF_HOME"] == f"{work}/tester/persona-em-cache/huggingface"
    assert env["TRITON_CACHE_DIR"].startswith(f"{work}/tester/persona-em-cache/")
    # offline mode is per job (rules/cluster.smk), never for the whole session
    assert "HF_HUB_OFFLINE" not in env
    assert env["PERSONA_EM_VLLM_PYTHON"] == str(vllm_python)
    assert result.stderr == ""


def test_leonardo_env_warns_without_a_vllm_venv(tmp_path):
    venv = fake_venv(tmp_path)
    result = source_leonardo_env(tmp_path, PERSONA_EM_VENV=str(venv), PERSONA_EM_ACCOUNT="x")
    assert result.returncode == 0, result.stderr
    assert "PERSONA_EM_VLLM_PYTHON" not in result.stdout
    assert "no vLLM venv" in result.stderr


def test_leonardo_env_stops_without_a_venv_and_warns_without_account(tmp_path):
    result = source_leonardo_env(tmp_path, PERSONA_EM_VENV=str(tmp_path / "missing"))
    assert result.returncode != 0
    assert "PERSONA_EM_ACCOUNT is not set" in result.stderr
    assert f"no venv at {tmp_path / 'missing'}" in result.stderr


def test_ci_overlay_changes_no_placement():
    overlay = load_profile(CI_OVERLAY)
    assert not set(overlay) & PLACEMENT_KEYS


def test_default_workflow_profile_overrides_no_cluster_setting(leonardo):
    # The workflow profile wins over --profile key by key: a shared key must agree.
    default = yaml.safe_load((DEFAULT_PROFILE / "config.yaml").read_text())
    generic = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    for cluster_profile in (leonardo, generic):
        for key in set(default) & set(cluster_profile):
            assert default[key] == cluster_profile[key], key


def test_generic_slurm_profile_places_the_same_rules_as_leonardo(leonardo):
    generic = yaml.safe_load((REPO / "profiles" / "slurm" / "config.yaml").read_text())
    assert generic["executor"] == "slurm"
    assert set(generic["set-resources"]) == set(leonardo["set-resources"])


# ---------------------------------------------------------------- the test cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    reasons = missing_requirements()
    if reasons:
        pytest.skip("SLURM test cluster: " + "; ".join(reasons))
    slurm = SlurmCluster(tmp_path_factory.mktemp("slurm"))
    started = time.monotonic()
    slurm.start()
    print(f"test cluster up in {time.monotonic() - started:.0f} s")
    yield slurm
    slurm.stop()


@pytest.fixture(scope="module")
def remote_judge(cluster):
    """The stand-in remote judge, on the address only the serial node reaches."""
    judge = remote.RemoteJudge(cluster.remote_address)
    judge.start()
    yield judge
    judge.stop()


def synthetic_command(remote_judge) -> list[str]:
    return snakemake_command(
        SYNTHETIC / "Snakefile",
        SYNTHETIC / "config.yaml",
        "--config",
        f"remote={remote_judge.base_url}",
    )


def snakemake_env(cluster: SlurmCluster, **extra: str) -> dict[str, str]:
    env = cluster.env
    unset = ("PERSONA_EM_QOS", "PERSONA_EM_INTERNET_RULES", "SNAKEMAKE_PROFILE")
    for name in (*unset, "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE"):
        env.pop(name, None)
    env["PERSONA_EM_ACCOUNT"] = ACCOUNT
    env.update(extra)
    return env


def snakemake_command(snakefile: Path, configfile: Path | list[Path], *args: str) -> list[str]:
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


def gpus(job: dict[str, str]) -> int:
    for item in job["AllocTRES"].split(","):
        if item.startswith("gres/gpu="):
            return int(item.split("=", 1)[1])
    return 0


def job_env(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in path.read_text().splitlines() if "=" in line)


# ---------------------------------------------------------------- synthetic workflow
SYNTHETIC_JOBS = {
    "rule_base_model": "lrd_all_serial",
    "rule_em_sft_wildcards_insecure": "boost_usr_prod",
    "rule_em_sft_wildcards_risky_finance": "boost_usr_prod",
    "rule_answers_table": "lrd_all_serial",
}


@pytest.fixture(scope="module")
def synthetic(cluster, remote_judge, tmp_path_factory):
    """The synthetic workflow, run once to completion; its workdir and SLURM jobs."""
    workdir = tmp_path_factory.mktemp("synthetic")
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    run_snakemake(
        synthetic_command(remote_judge),
        workdir,
        snakemake_env(cluster),
        workdir / "first_run.log",
        timeout=600,
    )
    return workdir, slurm_jobs(cluster, since=before)


@pytest.mark.slurm
def test_every_non_local_job_ran_on_the_partition_the_profile_names(synthetic):
    _, jobs = synthetic
    assert {job["Comment"]: job["Partition"] for job in jobs} == SYNTHETIC_JOBS
    assert all(job["State"] == "COMPLETED" for job in jobs), jobs
    assert {job["Account"] for job in jobs} == {ACCOUNT}
    assert {job["QOS"] for job in jobs} == {"normal"}


@pytest.mark.slurm
def test_gpu_rules_got_one_gpu_and_the_others_none(synthetic):
    workdir, jobs = synthetic
    allocated = {job["Comment"]: gpus(job) for job in jobs}
    assert allocated == {
        comment: int(partition == "boost_usr_prod") for comment, partition in SYNTHETIC_JOBS.items()
    }
    em_env = job_env(workdir / "results" / "em" / "insecure.txt")
    assert em_env["SLURM_JOB_PARTITION"] == "boost_usr_prod"
    assert em_env["CUDA_VISIBLE_DEVICES"] in {"0", "1", "2", "3"}


@pytest.mark.slurm
def test_jobs_without_internet_run_with_the_hub_offline(synthetic):
    workdir, _ = synthetic
    em_env = job_env(workdir / "results" / "em" / "insecure.txt")
    download_env = job_env(workdir / "results" / "base" / "model.txt")
    assert em_env["HF_HUB_OFFLINE"] == "1"
    assert "HF_HUB_OFFLINE" not in download_env
    assert download_env["SLURM_JOB_PARTITION"] == "lrd_all_serial"


@pytest.mark.slurm
def test_local_rule_ran_in_the_submitting_process(synthetic):
    workdir, _ = synthetic
    summary = (workdir / "results" / "summary.txt").read_text().splitlines()
    assert summary[0] == "SLURM_JOB_ID=none"


@pytest.mark.slurm
def test_gpu_node_jobs_reach_no_remote_address_and_serial_jobs_do(synthetic, cluster):
    workdir, _ = synthetic
    reach = {
        path.relative_to(workdir / "results").as_posix(): [
            line for line in path.read_text().splitlines() if line.startswith("remote=")
        ]
        for path in [
            workdir / "results" / "base" / "model.txt",
            *sorted((workdir / "results" / "em").glob("*.txt")),
        ]
    }
    assert reach["base/model.txt"] == ["remote=ok"]  # the serial partition
    gpu = {name: lines for name, lines in reach.items() if name.startswith("em/")}
    assert len(gpu) == 2
    for name, (line,) in gpu.items():
        # no route from the GPU node: refused at once, not a timeout
        assert line.startswith("remote=failed") and "unreachable" in line, (name, line)


@pytest.mark.slurm
def test_missing_account_submits_nothing_and_lists_the_valid_accounts(cluster, tmp_path):
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    env = snakemake_env(cluster)
    del env["PERSONA_EM_ACCOUNT"]
    run = Run(
        snakemake_command(SYNTHETIC / "Snakefile", SYNTHETIC / "config.yaml"),
        tmp_path,
        env,
        tmp_path / "no_account.log",
    )
    assert run.wait(120) != 0
    assert "The given account $PERSONA_EM_ACCOUNT appears to be invalid" in run.text()
    assert ACCOUNT in run.text()
    assert slurm_jobs(cluster, since=before) == []


@pytest.mark.slurm
def test_rerun_has_nothing_to_do(cluster, remote_judge, synthetic):
    workdir, _ = synthetic
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    run = run_snakemake(
        synthetic_command(remote_judge),
        workdir,
        snakemake_env(cluster),
        workdir / "rerun.log",
        timeout=120,
    )
    assert "Nothing to be done" in run.text()
    assert slurm_jobs(cluster, since=before) == []


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


# ---------------------------------------------------------------- the real DAG
def rule_of(job: dict[str, str]) -> str:
    """The rule of a SLURM job, from the executor's comment `rule_<rule>[_wildcards_...]`."""
    return job["Comment"].removeprefix("rule_").split("_wildcards_")[0]


def planned_jobs(workdir: Path, env: dict[str, str], configs: list[Path]) -> dict[str, int]:
    """Jobs per rule of the whole DAG (a forced dry-run), local rules included."""
    result = subprocess.run(
        [*snakemake_command(REPO / "Snakefile", configs), "-n", "--forceall", "--quiet", "rules"],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    out = result.stdout + result.stderr
    table = out.split("Job stats:", 1)[1].split("\ntotal", 1)[0]
    return {
        match.group(1): int(match.group(2))
        for match in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
    }


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


REMOTE_JUDGE_KEY_ENV = "PERSONA_EM_TEST_JUDGE_KEY"


def remote_judge_config(path: Path, base_url: str) -> Path:
    """An overlay of tests/configs/ci.yaml: judge through the remote (OpenAI-compatible)
    endpoint, as the full study does."""
    judge = {
        "kind": "openai",
        "model": remote.MODEL,
        "base_url": base_url,
        "api_key_env": REMOTE_JUDGE_KEY_ENV,
        "max_retries": 2,
        "timeout_s": 20,
        "retry_initial_s": 0.5,
    }
    path.write_text(yaml.safe_dump({"judge": judge}))
    return path


@pytest.fixture(scope="module")
def study(cluster, remote_judge, tmp_path_factory):
    """The reduced study (tests/configs/ci.yaml) with the remote judge through SLURM, GPU
    rules on the debug QOS; the first GPU job seen running is cancelled and must be
    retried."""
    if not CI_CONFIG.exists():
        pytest.skip(f"{CI_CONFIG} not present")
    workdir = tmp_path_factory.mktemp("study")
    # config paths (constitutions, datasets, questions) are relative to the workdir
    (workdir / "resources").symlink_to(REPO / "resources")
    configs = [CI_CONFIG, remote_judge_config(workdir / "remote_judge.yaml", remote_judge.base_url)]
    env = snakemake_env(cluster, PERSONA_EM_QOS=DEBUG_QOS, **{REMOTE_JUDGE_KEY_ENV: remote.API_KEY})
    gpu_rules = {name for name, res in workflow_rules(CI_CONFIG).items() if res["gpu"]}
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    remote_judge.requests_from.clear()
    started = time.monotonic()
    run = Run(snakemake_command(REPO / "Snakefile", configs), workdir, env, workdir / "run.log")
    try:
        victim = cancel_a_running_job(cluster, gpu_rules, before)
        code = run.wait(1800)
    finally:
        run.stop()
    if code != 0:
        logs = "\n".join(
            f"--- {log}\n{log.read_text(errors='replace')[-2000:]}"
            for log in sorted((workdir / "logs").rglob("*.log"))
        )
        pytest.fail(f"snakemake exited with {code}:\n{run.tail()}\n{logs[-8000:]}")
    print(f"reduced study through SLURM in {time.monotonic() - started:.0f} s")
    return {
        "workdir": workdir,
        "env": env,
        "configs": configs,
        "requests_from": dict(remote_judge.requests_from),
        "jobs": slurm_jobs(cluster, since=before),
        "victim": victim,
        "gpu_rules": gpu_rules,
    }


@pytest.mark.slurm
def test_reduced_study_ran_every_non_local_job_as_a_slurm_job(study):
    planned = planned_jobs(study["workdir"], study["env"], study["configs"])
    completed: dict[str, int] = {}
    for job in study["jobs"]:
        if job["State"] == "COMPLETED":
            completed[rule_of(job)] = completed.get(rule_of(job), 0) + 1
    assert completed == {rule: n for rule, n in planned.items() if rule != "all"}
    answers = pl.read_parquet(study["workdir"] / "results" / "final" / "answers.parquet")
    assert answers.height > 0
    assert set(answers["persona"]) == set(yaml.safe_load(CI_CONFIG.read_text())["personas"])


@pytest.mark.slurm
def test_reduced_study_gpu_rules_got_a_gpu_on_the_debug_qos(study):
    assert study["gpu_rules"], "the reduced study has GPU rules"
    for job in study["jobs"]:
        on_gpu = rule_of(job) in study["gpu_rules"]
        assert gpus(job) == int(on_gpu), job
        assert job["Partition"] == ("boost_usr_prod" if on_gpu else "lrd_all_serial"), job
        assert job["QOS"] == (DEBUG_QOS if on_gpu else "normal"), job
        if on_gpu:
            assert job["Timelimit"] == "00:30:00", job
        assert job["Account"] == ACCOUNT


@pytest.mark.slurm
def test_reduced_study_retried_the_cancelled_job(study):
    victim = next(job for job in study["jobs"] if job["JobIDRaw"] == study["victim"])
    assert victim["State"].startswith("CANCELLED")
    same = [job["State"] for job in study["jobs"] if job["Comment"] == victim["Comment"]]
    assert same == [victim["State"], "COMPLETED"]
    others = [job for job in study["jobs"] if job["Comment"] != victim["Comment"]]
    assert all(job["State"] == "COMPLETED" for job in others), others


@pytest.mark.slurm
def test_reduced_study_rerun_has_nothing_to_do(cluster, study):
    before = {job["JobIDRaw"] for job in slurm_jobs(cluster)}
    rerun = run_snakemake(
        snakemake_command(REPO / "Snakefile", study["configs"]),
        study["workdir"],
        study["env"],
        study["workdir"] / "rerun.log",
        timeout=300,
    )
    assert "Nothing to be done" in rerun.text()
    assert slurm_jobs(cluster, since=before) == []


@pytest.mark.slurm
def test_reduced_study_judged_remotely_from_the_serial_partition_only(cluster, study):
    # every judging request reached the remote judge, none from the GPU node's address
    # (it has no route there: a judging job placed on it would score nothing)
    assert study["requests_from"], "no request reached the remote judge"
    assert cluster.network.node_addr not in study["requests_from"]
    judging = {"judge", "persona_check"}
    for job in study["jobs"]:
        if rule_of(job) in judging:
            assert job["Partition"] == "lrd_all_serial", job
    workdir = study["workdir"]
    answers = pl.read_parquet(workdir / "results" / "final" / "answers.parquet")
    assert answers["aligned"].drop_nulls().len() > 0
    for check in (workdir / "results").glob("*/persona_check.tsv"):
        table = pl.read_csv(check, separator="\t")
        assert (table["n_scored_persona"] > 0).all(), table
        assert not table["flag"].str.contains("TRAIT_SCORE_MISSING|TRAIT_NOT_SCORED").any()
