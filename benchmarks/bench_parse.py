"""Parse-time cost of the workflow: the full study's dry-run, no-op rerun and one
spawned job's start, each against a bare synthetic Snakefile with the same number of
jobs (one root rule, one wildcard rule, `all`). Every SLURM job re-parses the Snakefile
and rebuilds its part of the DAG, so this cost is paid once per job on a cluster.

    .venv/bin/python benchmarks/bench_parse.py [--config config/config.yaml] [--repeats 3]

Prints a table: median wall and CPU seconds (user + sys of the Snakemake process) per
step, and the study / synthetic ratio (target: 1.5x or less). CPU time is the steadier
figure on a shared machine. The no-op rerun needs every output to exist: the script
creates them empty (directories for directory() outputs) and lets `snakemake --touch`
order their modification times.
"""

from __future__ import annotations

import argparse
import os
import re
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

SYNTHETIC_SNAKEFILE = """\
N = int(config["n_jobs"])


rule all:
    input:
        expand("out/{i}.txt", i=range(N - 2)),


rule root:
    output:
        "root.txt",
    shell:
        "touch {output}"


rule leaf:
    input:
        "root.txt",
    output:
        "out/{i}.txt",
    shell:
        "touch {output}"
"""


@dataclass
class Workflow:
    name: str
    workdir: Path
    args: list[str]  # --snakefile ... --configfile ... / --config ...
    one_job: list[str]  # targets and options of a spawned job's start


@dataclass
class Timing:
    wall: float
    cpu: float


def snakemake(workflow: Workflow, *args: str, check: bool = True) -> tuple[str, Timing]:
    command = [
        sys.executable,
        "-m",
        "snakemake",
        *workflow.args,
        "--workflow-profile",
        "none",
        "--cores",
        "1",
        *args,
    ]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    result = subprocess.run(
        command, cwd=workflow.workdir, capture_output=True, text=True, env=_env()
    )
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    if check and result.returncode != 0:
        raise SystemExit(
            f"{workflow.name}: snakemake {' '.join(args)} failed:\n{result.stderr[-3000:]}"
        )
    return result.stdout + result.stderr, Timing(wall, cpu)


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("SNAKEMAKE_PROFILE", None)
    return env


def job_count(workflow: Workflow) -> int:
    out, _ = snakemake(workflow, "--dry-run", "--quiet", "rules")
    match = re.search(r"^total\s+(\d+)\s*$", out, re.MULTILINE)
    if not match:
        raise SystemExit(f"{workflow.name}: no job total in the dry-run output:\n{out[-2000:]}")
    return int(match.group(1))


def directory_outputs(snakefile: Path, configfile: Path) -> set[str]:
    """Rules whose outputs are directory() outputs."""
    from snakemake.api import ConfigSettings, ResourceSettings, SnakemakeApi
    from snakemake.io import is_flagged
    from snakemake.settings.types import OutputSettings

    with SnakemakeApi(OutputSettings()) as api:
        workflow = api.workflow(
            resource_settings=ResourceSettings(),
            config_settings=ConfigSettings(configfiles=[configfile]),
            snakefile=snakefile,
            workdir=REPO,
        )._workflow
        return {
            rule.name
            for rule in workflow.rules
            if any(is_flagged(f, "directory") for f in rule.output)
        }


def materialise_outputs(workflow: Workflow, directory_rules: set[str]) -> None:
    """Create every output of the DAG, then let --touch order the mtimes."""
    out, _ = snakemake(workflow, "--summary", "--quiet", "all")
    for line in out.splitlines()[1:]:
        fields = line.split("\t")
        if len(fields) < 3:
            continue
        path, rule = workflow.workdir / fields[0], fields[2]
        if rule in directory_rules:
            path.mkdir(parents=True, exist_ok=True)
        else:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.touch()
    snakemake(workflow, "--touch", "--quiet", "all")


def median(timings: list[Timing]) -> Timing:
    return Timing(
        statistics.median(t.wall for t in timings), statistics.median(t.cpu for t in timings)
    )


def measure(workflows: list[Workflow], repeats: int) -> dict[str, dict[str, Timing]]:
    """Median timings per workflow and step; the workflows alternate run by run, so
    that a change in the machine's load affects both alike."""
    quiet = ["--quiet", "host", "progress", "reason", "rules"]  # keeps "Nothing to be done"
    steps = {
        "dry-run": lambda wf: ["--dry-run", *quiet],
        "no-op rerun": lambda wf: [*quiet],
        "one job's start": lambda wf: ["--dry-run", *quiet, "--force", *wf.one_job],
    }
    runs: dict[str, dict[str, list[Timing]]] = {wf.name: {} for wf in workflows}
    for _ in range(repeats):
        for step, args in steps.items():
            for wf in workflows:
                out, timing = snakemake(wf, *args(wf))
                if step == "no-op rerun" and "Nothing to be done" not in out:
                    raise SystemExit(f"{wf.name}: the rerun was not a no-op:\n{out[-2000:]}")
                runs[wf.name].setdefault(step, []).append(timing)
    return {
        name: {step: median(timings) for step, timings in by_step.items()}
        for name, by_step in runs.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=REPO / "config" / "config.yaml")
    parser.add_argument("--repeats", type=int, default=3)
    options = parser.parse_args()
    configfile = options.config.resolve()

    with tempfile.TemporaryDirectory(prefix="bench_parse_") as tmp:
        study_dir = Path(tmp) / "study"
        study_dir.mkdir()
        # config paths (constitutions, datasets, questions) are relative to the workdir
        (study_dir / "resources").symlink_to(REPO / "resources")
        study = Workflow(
            "study",
            study_dir,
            ["--snakefile", str(REPO / "Snakefile"), "--configfile", str(configfile)],
            [],
        )
        n_jobs = job_count(study)
        first_judged = next(iter(sorted(_judged_outputs(study))), None)
        study.one_job = [first_judged, "--allowed-rules", "judge"] if first_judged else []

        synthetic_dir = Path(tmp) / "synthetic"
        synthetic_dir.mkdir()
        (synthetic_dir / "Snakefile").write_text(SYNTHETIC_SNAKEFILE)
        synthetic = Workflow(
            "synthetic",
            synthetic_dir,
            ["--snakefile", "Snakefile", "--config", f"n_jobs={n_jobs}"],
            ["out/0.txt", "--allowed-rules", "leaf"],
        )
        assert job_count(synthetic) == n_jobs

        materialise_outputs(study, directory_outputs(REPO / "Snakefile", configfile))
        materialise_outputs(synthetic, set())

        timings = measure([study, synthetic], options.repeats)

    print(f"\nfull study: {configfile.relative_to(REPO)}, {n_jobs} jobs; median of "
          f"{options.repeats}; seconds (wall / CPU)\n")  # fmt: skip
    header = f"{'step':<16} {'study':>15} {'synthetic':>15} {'ratio wall':>11} {'ratio CPU':>10}"
    print(header)
    print("-" * len(header))
    for step, study_t in timings["study"].items():
        synth_t = timings["synthetic"][step]
        print(
            f"{step:<16} {study_t.wall:7.2f} / {study_t.cpu:5.2f} "
            f"{synth_t.wall:7.2f} / {synth_t.cpu:5.2f} "
            f"{study_t.wall / synth_t.wall:10.2f}x {study_t.cpu / synth_t.cpu:9.2f}x"
        )


def _judged_outputs(study: Workflow) -> list[str]:
    out, _ = snakemake(study, "--summary", "--quiet", "all")
    return [
        line.split("\t")[0]
        for line in out.splitlines()[1:]
        if len(line.split("\t")) > 2 and line.split("\t")[2] == "judge"
    ]


if __name__ == "__main__":
    main()
