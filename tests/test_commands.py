"""The README's three commands, as a researcher types them, as dry-runs.

- `snakemake --profile leonardo`: after the setup step (profiles/link.sh, which env.sh
  and `make profile` run) the bare name finds the leonardo profile, with its settings
  in effect: the slurm executor and the full study's config.
- `snakemake results/final/fig8_cross_model.png`: plans the figure's ancestors in the
  DAG and nothing else.
- `snakemake -n` after adding a persona: plans that persona's jobs and the aggregates
  over personas, nothing of the personas already built.

Every dry-run runs in a fresh working directory, so that nothing a run in the checkout
has built changes what is planned.
"""

import json
import os
import re
import shutil
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
LINK = REPO / "profiles" / "link.sh"
LEONARDO = (REPO / "profiles" / "leonardo").resolve()
FULL_CONFIG = REPO / "config" / "config.yaml"
OFFLINE_CONFIG = REPO / "config" / "offline.yaml"
BIN = Path(sys.executable).parent
# What a checkout holds for Snakemake to run, without results/, logs/ or .snakemake/.
CHECKOUT_ITEMS = (
    "Snakefile", "rules", "workflow_scripts", "envs", "report", "config", "resources", "profiles",
)


# ---------------------------------------------------------------- helpers
@dataclass(frozen=True)
class PlannedJob:
    rule: str
    wildcards: tuple[tuple[str, str], ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]

    @property
    def persona(self) -> str | None:
        wildcards = dict(self.wildcards)
        if "h4run" in wildcards:  # steer/{persona}/{dataset} or ablate/{persona}/{dataset}/s{seed}
            return wildcards["h4run"].split("/")[1]
        return wildcards.get("persona")

    @property
    def key(self) -> tuple[str, tuple[tuple[str, str], ...]]:
        return self.rule, self.wildcards


def planned_jobs(dry_run: str) -> list[PlannedJob]:
    """The jobs a dry-run prints, one block each."""
    jobs = []
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) \w+:\n)", dry_run):
        head = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):\n", block)
        if not head:
            continue
        fields = dict(re.findall(r"^    (\w+): (.*)$", block, re.MULTILINE))
        wildcards = [w.split("=", 1) for w in fields.get("wildcards", "").split(", ") if w]
        jobs.append(PlannedJob(
            rule=head.group(1),
            wildcards=tuple(sorted((k, v) for k, v in wildcards)),
            inputs=tuple(f for f in fields.get("input", "").split(", ") if f),
            outputs=tuple(f for f in fields.get("output", "").split(", ") if f),
        ))
    return jobs


def job_table(dry_run: str) -> Counter:
    """The dry-run's "Job stats" table, jobs per rule (total left out)."""
    table = dry_run[dry_run.index("Job stats:") :].split("\n\n")[0]
    return Counter({m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)$", table, re.MULTILINE)
                    if m[1] != "total"})


def checked_jobs(dry_run: str) -> list[PlannedJob]:
    """The planned jobs, after checking that they add up to the job table."""
    jobs = planned_jobs(dry_run)
    assert Counter(job.rule for job in jobs) == job_table(dry_run)
    return jobs


def ancestors(jobs: list[PlannedJob], job: PlannedJob) -> set[PlannedJob]:
    """The jobs `job` depends on, directly or not: the producers of its inputs (an
    input inside a directory output comes from that directory's job)."""
    producer = {output: j for j in jobs for output in j.outputs}

    def producers(j: PlannedJob):
        for path in j.inputs:
            for candidate in (path, *map(str, Path(path).parents)):
                if candidate in producer:
                    yield producer[candidate]
                    break

    found: set[PlannedJob] = set()
    todo = [job]
    while todo:
        for parent in producers(todo.pop()):
            if parent not in found:
                found.add(parent)
                todo.append(parent)
    return found


def fresh_checkout(tmp_path: Path) -> Path:
    """A working directory that looks like the checkout, with nothing built."""
    workdir = tmp_path / "checkout"
    workdir.mkdir()
    for item in CHECKOUT_ITEMS:
        (workdir / item).symlink_to(REPO / item)
    return workdir


def fresh_workdir(tmp_path: Path) -> Path:
    """An empty working directory; config paths (resources/...) are relative to it."""
    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "resources").symlink_to(REPO / "resources")
    (workdir / "config").symlink_to(REPO / "config")
    return workdir


def snakemake(*args: str, cwd: Path) -> str:
    """The workflow's Snakemake on the repository's Snakefile; its stdout."""
    command = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "--cores", "1", *args]
    result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """The environment of a user whose home is `home`: no XDG_CONFIG_HOME, no account,
    no SNAKEMAKE_PROFILE, the workflow's venv first on PATH."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("XDG_CONFIG_HOME", "PERSONA_EM_ACCOUNT", "SNAKEMAKE_PROFILE")}
    return {**env, "HOME": str(home), "PATH": f"{BIN}{os.pathsep}{env['PATH']}", **extra}


def link_profile(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(LINK), "leonardo"], env=env, capture_output=True, text=True)


# ---------------------------------------------------------------- --profile leonardo
def test_setup_links_the_leonardo_profile_and_the_bare_name_uses_it(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home)
    setup = link_profile(env)
    assert setup.returncode == 0, setup.stderr
    link = home / ".config" / "snakemake" / "leonardo"
    assert link.is_symlink() and link.resolve() == LEONARDO
    assert setup.stdout.strip() == f"linked {link} -> {LEONARDO}: `snakemake --profile leonardo` uses it"

    checkout = fresh_checkout(tmp_path)
    # The settings in effect, as Snakemake's own command line parser reads them.
    probe = ("from snakemake.cli import parse_args; _, a = parse_args(['--profile', 'leonardo', '-n']); "
             "print(a.executor, *a.configfile, a.jobs, a.slurm_status_command)")
    parsed = subprocess.run([sys.executable, "-c", probe], cwd=checkout, env=env,
                            capture_output=True, text=True)
    assert parsed.returncode == 0, parsed.stderr
    assert parsed.stdout.split() == ["slurm", "config/config.yaml", "60", "squeue"]

    # The command as typed. The dry-run needs neither the account nor sbatch/sacct.
    result = subprocess.run(["snakemake", "--profile", "leonardo", "-n"], cwd=checkout, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Using profiles leonardo and workflow specific profile profiles/default" in result.stderr
    assert f"Config file(s): [PosixPath('{checkout / 'config' / 'config.yaml'}')]" in result.stdout
    jobs = checked_jobs(result.stdout)
    models = set(yaml.safe_load(FULL_CONFIG.read_text())["models"])
    assert {dict(j.wildcards)["model"] for j in jobs if "model" in dict(j.wildcards)} == models
    # Placed as the profile says: GPU rules on the booster partition, account unexpanded.
    em_sft = result.stdout[result.stdout.index("rule em_sft:") :].split("\n\n")[0]
    assert "slurm_partition=boost_usr_prod" in em_sft and "gpu=1" in em_sft
    assert "slurm_account=$PERSONA_EM_ACCOUNT" in em_sft


def test_setup_run_twice_changes_nothing(tmp_path):
    env = user_env(tmp_path)
    assert link_profile(env).returncode == 0
    config_dir = tmp_path / ".config" / "snakemake"
    before = [(p.name, os.readlink(p), p.lstat().st_ino, p.lstat().st_mtime_ns)
              for p in config_dir.iterdir()]
    again = link_profile(env)
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == f"{config_dir / 'leonardo'} already links to {LEONARDO}; nothing changed"
    after = [(p.name, os.readlink(p), p.lstat().st_ino, p.lstat().st_mtime_ns)
             for p in config_dir.iterdir()]
    assert after == before


def test_setup_leaves_a_different_profile_of_that_name_alone(tmp_path):
    config_home = tmp_path / "xdg"
    own = config_home / "snakemake" / "leonardo"
    own.mkdir(parents=True)
    (own / "config.yaml").write_text("executor: local\n")
    result = link_profile(user_env(tmp_path / "home", XDG_CONFIG_HOME=str(config_home)))
    assert result.returncode == 1
    assert result.stdout == ""
    assert f"{own}: a profile named leonardo is already there (a directory); expected a link to {LEONARDO}" in result.stderr
    assert "Left as it is" in result.stderr
    assert not own.is_symlink() and [p.name for p in own.iterdir()] == ["config.yaml"]
    assert (own / "config.yaml").read_text() == "executor: local\n"

    other = tmp_path / "other-checkout" / "profiles" / "leonardo"
    other.mkdir(parents=True)
    shutil.rmtree(own)
    own.symlink_to(other)
    result = link_profile(user_env(tmp_path / "home", XDG_CONFIG_HOME=str(config_home)))
    assert result.returncode == 1
    assert f"(a link to {other}); expected a link to {LEONARDO}" in result.stderr
    assert os.readlink(own) == str(other)


def test_sourcing_the_leonardo_env_script_links_the_profile(tmp_path):
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    (venv / "bin" / "activate").write_text(f"export VIRTUAL_ENV={venv}\n")
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "USER": "tester",
           "PERSONA_EM_VENV": str(venv), "PERSONA_EM_ACCOUNT": "x"}
    script = f"source {REPO / 'profiles' / 'leonardo' / 'env.sh'}"
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / ".config" / "snakemake" / "leonardo").resolve() == LEONARDO
    (tmp_path / ".config" / "snakemake" / "leonardo").unlink()
    (tmp_path / ".config" / "snakemake" / "leonardo").mkdir()
    result = subprocess.run(["bash", "-c", script], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert result.returncode == 1
    assert "a profile named leonardo is already there (a directory)" in result.stderr


# ---------------------------------------------------------------- one figure
def test_a_figure_target_plans_exactly_its_ancestors_on_the_full_config(tmp_path):
    workdir = fresh_workdir(tmp_path)
    grid = checked_jobs(snakemake("-n", "--configfile", "config/config.yaml", cwd=workdir))
    (fig8,) = [j for j in grid if "results/final/fig8_cross_model.png" in j.outputs]
    expected = {fig8} | ancestors(grid, fig8)
    others = {j for j in grid if j.rule in ("figure", "results_report") and j != fig8}
    assert others and not others & expected

    # The target before --configfile: every word after it is read as a config file.
    planned = checked_jobs(snakemake(
        "-n", "results/final/fig8_cross_model.png", "--configfile", "config/config.yaml", cwd=workdir
    ))
    assert len(planned) == len(set(planned))
    assert set(planned) == expected
    assert [j.wildcards for j in planned if j.rule == "figure"] == [(("figure", "fig8_cross_model"),)]


# ---------------------------------------------------------------- adding a persona
DIRECTORY_OUTPUTS = """
import json, sys
from pathlib import Path
from snakemake.api import SnakemakeApi
from snakemake.io import is_flagged
from snakemake.settings.types import ConfigSettings, OutputSettings, ResourceSettings
with SnakemakeApi(OutputSettings()) as api:
    workflow = api.workflow(
        resource_settings=ResourceSettings(cores=1),
        config_settings=ConfigSettings(configfiles=[Path(sys.argv[2])]),
        snakefile=Path(sys.argv[1]), workdir=Path.cwd(),
    )._workflow
    print(json.dumps({r.name: [i for i, f in enumerate(r.output) if is_flagged(f, "directory")]
                      for r in workflow.rules}))
"""


def build_stand_ins(workdir: Path, configfile: Path, jobs: list[PlannedJob]) -> None:
    """Empty outputs for every job, then `--touch` over them: Snakemake records each
    job's metadata (params, code, set of inputs) as after a real run, so that a job whose
    params change with the new persona is planned again, as it would be for real. (The
    touch executor waits 0.1 s per job: most of this test's time.)"""
    probe = subprocess.run([sys.executable, "-c", DIRECTORY_OUTPUTS, str(REPO / "Snakefile"), str(configfile)],
                           cwd=workdir, capture_output=True, text=True)
    assert probe.returncode == 0, probe.stderr[-3000:]
    directories = json.loads(probe.stdout.strip().splitlines()[-1])
    for job in jobs:
        for index, output in enumerate(job.outputs):
            path = workdir / output
            if index in directories[job.rule]:
                path.mkdir(parents=True, exist_ok=True)
            else:
                path.parent.mkdir(parents=True, exist_ok=True)
                path.touch()
    snakemake("--touch", "--forceall", "--configfile", str(configfile), cwd=workdir)


def renamed_wildcard(name: str, value: str, old: str, new: str) -> str:
    if name == "persona":
        return new
    if name == "h4run":
        parts = value.split("/")
        return "/".join([parts[0], new if parts[1] == old else parts[1], *parts[2:]])
    return value


def test_dry_run_after_adding_a_persona_plans_that_persona_and_the_aggregates(tmp_path):
    workdir = fresh_workdir(tmp_path)
    config = yaml.safe_load(OFFLINE_CONFIG.read_text())
    before = tmp_path / "offline.yaml"
    shutil.copy(OFFLINE_CONFIG, before)
    grid = checked_jobs(snakemake("-n", "--configfile", str(before), cwd=workdir))
    build_stand_ins(workdir, before, grid)

    old_personas = set(config["personas"])
    goodness = config["personas"]["goodness"]
    assert goodness["source"] == "constitution"
    shutil.copy(workdir / goodness["constitution"], tmp_path / "humor.json")
    config["personas"]["humor"] = {"source": "constitution", "constitution": str(tmp_path / "humor.json")}
    after = tmp_path / "offline_humor.yaml"
    after.write_text(yaml.safe_dump(config, sort_keys=False))
    planned = checked_jobs(snakemake("-n", "--configfile", str(after), cwd=workdir))

    assert {j.persona for j in planned} == {"humor", None}, "jobs of the personas already built"
    # The new persona's jobs: those of a persona of the same source, renamed.
    renamed = {(j.rule, tuple(sorted((k, renamed_wildcard(k, v, "goodness", "humor")) for k, v in j.wildcards)))
               for j in grid if j.persona == "goodness"}
    assert {j.key for j in planned if j.persona == "humor"} == renamed
    # The aggregates: every job without a persona that depends on one.
    aggregates = {j.key for j in grid
                  if j.persona is None and any(a.persona in old_personas for a in ancestors(grid, j))}
    assert {j.key for j in planned if j.persona is None} == aggregates
    assert {rule for rule, _ in aggregates} >= {"answers_table", "statistics", "figure", "results_report"}
