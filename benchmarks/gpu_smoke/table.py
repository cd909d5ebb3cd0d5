"""Per-rule table of a finished run: wall time from Snakemake's benchmark files
(logs/benchmarks/<rule>/...tsv, column `s`) and peak GPU memory from the jobs' logs
(the line `peak GPU memory: X GiB allocated, Y GiB reserved (device)` that
workflow_scripts.core.job writes at the end of every job that used CUDA).

    python benchmarks/gpu_smoke/table.py [--logs logs] > table.md
"""

from __future__ import annotations

import argparse
import csv
import re
import sys
from dataclasses import dataclass
from pathlib import Path

PEAK = re.compile(r"peak GPU memory: ([\d.]+) GiB allocated, ([\d.]+) GiB reserved \((.*)\)")


@dataclass
class Row:
    rule: str
    jobs: int
    wall_s: float
    max_job_s: float
    peak_gib: float | None  # the largest peak of the rule's jobs; None: no job used CUDA
    cuda_jobs: int
    device: str


def benchmark_seconds(tsv: Path) -> float:
    with tsv.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f, delimiter="\t"))
    if not rows:
        raise ValueError(f"{tsv}: no benchmark row")
    return float(rows[-1]["s"])


def peak_of_line(line: str) -> tuple[float, str] | None:
    """(GiB allocated, device) of a peak-memory log line, else None."""
    m = PEAK.search(line)
    return (float(m.group(1)), m.group(3)) if m else None


def peak_of(log: Path) -> tuple[float, str] | None:
    """The last peak-memory line of a job's log, if any."""
    found = None
    for line in log.read_text(encoding="utf-8", errors="replace").splitlines():
        found = peak_of_line(line) or found
    return found


def rule_rows(logs: Path) -> list[Row]:
    """One row per rule: logs/benchmarks/<rule>/**.tsv (or logs/benchmarks/<rule>.tsv for
    a rule without wildcards) and its logs/<rule>/**.log (or logs/<rule>.log)."""
    rows = []
    for entry in sorted((logs / "benchmarks").iterdir()):
        rule = entry.name.removesuffix(".tsv")
        tsvs = sorted(entry.rglob("*.tsv")) if entry.is_dir() else [entry]
        times = [benchmark_seconds(t) for t in tsvs]
        job_logs = sorted((logs / rule).rglob("*.log")) if (logs / rule).is_dir() else []
        if (logs / f"{rule}.log").is_file():
            job_logs.append(logs / f"{rule}.log")
        peaks = [p for log in job_logs if (p := peak_of(log))]
        rows.append(
            Row(
                rule=rule,
                jobs=len(times),
                wall_s=sum(times),
                max_job_s=max(times, default=0.0),
                peak_gib=max((p[0] for p in peaks), default=None),
                cuda_jobs=len(peaks),
                device=peaks[0][1] if peaks else "",
            )
        )
    return rows


def markdown(rows: list[Row]) -> str:
    lines = [
        "| rule | jobs | wall s (all jobs) | longest job s | jobs on CUDA | peak GPU memory GiB |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in rows:
        peak = "—" if r.peak_gib is None else f"{r.peak_gib:.2f}"
        lines.append(
            f"| {r.rule} | {r.jobs} | {r.wall_s:.1f} | {r.max_job_s:.1f} | {r.cuda_jobs} | {peak} |"
        )
    devices = sorted({r.device for r in rows if r.device})
    lines.append("")
    lines.append(
        f"Device: {', '.join(devices) or 'none (no job used CUDA)'}; total wall time of all jobs "
        f"{sum(r.wall_s for r in rows):.0f} s."
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", type=Path, default=Path("logs"))
    args = parser.parse_args(argv)
    sys.stdout.write(markdown(rule_rows(args.logs)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
