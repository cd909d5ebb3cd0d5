"""Where a run's time went, per rule: the wall time of every job from Snakemake's
benchmark files (logs/benchmarks/<rule>/...tsv or logs/benchmarks/<rule>.tsv), summed
by rule, largest first, as a Markdown table.

    python benchmarks/rule_times.py [RUN_DIR] [--snakemake-log FILE] > times.md

RUN_DIR is the run's working directory (default: .). With a Snakemake log (default: the
newest .snakemake/log/*.snakemake.log of RUN_DIR, if any) each benchmark file is
attributed to the rule the log names for it, and the run's own wall clock (first to
last timestamp) is given beside the jobs' sum; without one the rule is the benchmark
file's first path component under logs/benchmarks.
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

BENCHMARKS = Path("logs") / "benchmarks"
RULE_LINE = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
BENCHMARK_LINE = re.compile(r"^\s+benchmark: (\S+)\s*$")
TIMESTAMP_LINE = re.compile(r"^\[(\w{3} \w{3} +\d+ \d\d:\d\d:\d\d \d{4})\]\s*$")


@dataclass(frozen=True)
class Job:
    """One job's figures from its benchmark file (the last row: a repeated benchmark
    keeps the final measurement)."""

    seconds: float
    cpu_seconds: float | None
    max_rss_mb: float | None


@dataclass(frozen=True)
class RuleTime:
    rule: str
    jobs: int
    seconds: float  # all jobs together
    longest_s: float
    cpu_seconds: float | None  # None: no job's benchmark recorded CPU time
    max_rss_mb: float | None


@dataclass(frozen=True)
class SnakemakeLog:
    rule_of: dict[str, str]  # benchmark path (relative to the run directory) -> rule
    first: datetime | None
    last: datetime | None

    @property
    def wall_seconds(self) -> float | None:
        if self.first is None or self.last is None:
            return None
        return (self.last - self.first).total_seconds()


def _number(value: str | None) -> float | None:
    """A benchmark cell as a float; '-' or '' (not measured) as None."""
    if value is None or value.strip() in {"", "-", "NA"}:
        return None
    return float(value)


def read_job(tsv: Path) -> Job:
    """The figures of one benchmark file; a file without a data row or without the
    `s` column is an error naming the file."""
    with tsv.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{tsv}: benchmark file has no data row")
    last = rows[-1]
    if _number(last.get("s")) is None:
        raise ValueError(f"{tsv}: benchmark row has no wall time in column 's'")
    return Job(
        seconds=float(last["s"]),
        cpu_seconds=_number(last.get("cpu_time")),
        max_rss_mb=_number(last.get("max_rss")),
    )


def parse_snakemake_log(text: str) -> SnakemakeLog:
    """Benchmark path -> rule from the job blocks of a Snakemake log (`rule X:` or
    `localrule X:` followed by `    benchmark: PATH`), and its first and last timestamps."""
    rule_of: dict[str, str] = {}
    stamps: list[datetime] = []
    rule = None
    for line in text.splitlines():
        if m := TIMESTAMP_LINE.match(line):
            stamps.append(datetime.strptime(m.group(1), "%a %b %d %H:%M:%S %Y"))
        elif m := RULE_LINE.match(line):
            rule = m.group(1)
        elif (m := BENCHMARK_LINE.match(line)) and rule is not None:
            rule_of[m.group(1)] = rule
    return SnakemakeLog(rule_of, min(stamps, default=None), max(stamps, default=None))


def rule_of_path(relative: Path, log: SnakemakeLog | None) -> str:
    """The rule a benchmark file (path relative to the run directory) belongs to."""
    if log is not None and str(relative) in log.rule_of:
        return log.rule_of[str(relative)]
    return relative.relative_to(BENCHMARKS).parts[0].removesuffix(".tsv")


def rule_times(run_dir: Path, log: SnakemakeLog | None = None) -> list[RuleTime]:
    """Per-rule sums of the run's benchmark files, largest first."""
    root = run_dir / BENCHMARKS
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no benchmark directory (is {run_dir} a run's working directory?)")
    by_rule: dict[str, list[Job]] = {}
    for tsv in sorted(root.rglob("*.tsv")):
        rule = rule_of_path(tsv.relative_to(run_dir), log)
        by_rule.setdefault(rule, []).append(read_job(tsv))
    rows = []
    for rule, jobs in by_rule.items():
        cpu = [j.cpu_seconds for j in jobs if j.cpu_seconds is not None]
        rss = [j.max_rss_mb for j in jobs if j.max_rss_mb is not None]
        rows.append(
            RuleTime(
                rule=rule,
                jobs=len(jobs),
                seconds=sum(j.seconds for j in jobs),
                longest_s=max(j.seconds for j in jobs),
                cpu_seconds=sum(cpu) if cpu else None,
                max_rss_mb=max(rss) if rss else None,
            )
        )
    return sorted(rows, key=lambda r: (-r.seconds, r.rule))


def _cell(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def markdown(rows: list[RuleTime], wall_seconds: float | None = None) -> str:
    total = sum(r.seconds for r in rows)
    lines = [
        "| rule | jobs | wall s (all jobs) | share | mean s | longest job s | CPU s | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        share = r.seconds / total if total else 0.0
        lines.append(
            f"| {r.rule} | {r.jobs} | {r.seconds:.1f} | {share:.1%} | {r.seconds / r.jobs:.1f} "
            f"| {r.longest_s:.1f} | {_cell(r.cpu_seconds)} | {_cell(r.max_rss_mb, 0)} |"
        )
    jobs = sum(r.jobs for r in rows)
    summary = f"{jobs} jobs of {len(rows)} rules; the jobs' wall times sum to {total:.0f} s"
    if wall_seconds is not None:
        summary += f"; the run took {wall_seconds:.0f} s from its first to its last log line"
    return "\n".join([*lines, "", summary + "."]) + "\n"


def newest_snakemake_log(run_dir: Path) -> Path | None:
    logs = sorted((run_dir / ".snakemake" / "log").glob("*.snakemake.log"))
    return logs[-1] if logs else None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dir", nargs="?", type=Path, default=Path("."))
    parser.add_argument("--snakemake-log", type=Path, default=None)
    args = parser.parse_args(argv)
    log_path = args.snakemake_log or newest_snakemake_log(args.run_dir)
    log = parse_snakemake_log(log_path.read_text(encoding="utf-8", errors="replace")) if log_path else None
    rows = rule_times(args.run_dir, log)
    sys.stdout.write(markdown(rows, log.wall_seconds if log else None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
