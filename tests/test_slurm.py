"""SLURM execution.

Fast tests: profiles/leonardo places every rule of the full study where its declared
needs (gpu, internet) can be met, within the partitions' limits, and reads the account
and QOS from the environment.

`slurm` tests: a two-node SLURM cluster (tests/slurm/cluster.py: munge, MariaDB,
slurmdbd, slurmctld, two slurmd; a fake Leonardo booster node with four fake GPUs and no
internet, in a network namespace, and a serial node) runs workflows through the SLURM
executor with profiles/leonardo itself, plus the small overlay tests/slurm/profile
(concurrency and polling only). Checked in `sacct`: every non-local job ran as a SLURM
job where the profile placed it, GPU rules got a GPU; GPU jobs reach no remote address
(a stand-in remote judge, tests/slurm/remote_judge.py), serial jobs do; a rerun has
nothing to do; a cancelled job is retried and the workflow finishes. The
synthetic workflow in tests/slurm/workflow checks the machinery in about two minutes;
the reduced study (tests/configs/ci.yaml) runs the real DAG once per session for
these checks and the content checks of tests/test_e2e.py (fixture `ci_run`,
tests/ci_run.py).
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

import polars as pl
import pytest
import yaml

from tests.slurm import remote_judge as remote
from tests.slurm.cluster import ACCOUNT, DEBUG_QOS
from tests.slurm.runs import (
    ATTEMPTS,
    Run,
    rule_of,
    run_snakemake,
    slurm_jobs,
    snakemake_command,
    snakemake_env,
    workflow_rules,
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
    # The full study judges through an API: the judge needs the internet.
    assert "judge" in on_serial


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


# ---------------------------------------------------------------- the real DAG
def planned_jobs(workdir: Path, env: dict[str, str]) -> dict[str, int]:
    """Jobs per rule of the whole DAG (a forced dry-run), local rules included."""
    result = subprocess.run(
        [*snakemake_command(REPO / "Snakefile", CI_CONFIG), "-n", "--forceall", "--quiet", "rules"],
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


@pytest.fixture(scope="module")
def study(request):
    """The session's reduced study (tests/configs/ci.yaml, fixture `ci_run`) as it ran
    through SLURM: GPU rules on the debug QOS, the first GPU job seen running cancelled
    and retried. Its content is checked in tests/test_e2e.py."""
    from tests.ci_run import chosen_mode
    from tests.slurm.cluster import missing_requirements

    # decided before the run: a session without the cluster does not run the study for a skip
    if chosen_mode(missing_requirements()) != "slurm":
        pytest.skip("the session's reduced study runs locally (PERSONA_EM_CI_RUN or no test cluster)")
    ci_run = request.getfixturevalue("ci_run")
    return {
        "workdir": ci_run.workdir,
        "env": ci_run.slurm.env,
        "jobs": ci_run.slurm.jobs,
        "victim": ci_run.slurm.victim,
        "gpu_rules": ci_run.slurm.gpu_rules,
    }


@pytest.mark.slurm
def test_reduced_study_ran_every_non_local_job_as_a_slurm_job(study):
    planned = planned_jobs(study["workdir"], study["env"])
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
        snakemake_command(REPO / "Snakefile", CI_CONFIG),
        study["workdir"],
        study["env"],
        study["workdir"] / "rerun.log",
        timeout=300,
    )
    assert "Nothing to be done" in rerun.text()
    assert slurm_jobs(cluster, since=before) == []
