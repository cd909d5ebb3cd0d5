"""Benchmark of the statistics stage on a synthetic full grid.

2 models x 12 personas x 8 EM datasets x 3 seeds (+ the 12 no-EM controls per model),
8 questions x 50 answers per run (240,000 answers), dataset roles of config/config.yaml,
10,000 cluster-bootstrap resamples: every table, every figure (300 dpi) and RESULTS.md,
in one process, timed per stage.

    python benchmarks/bench_stats.py                      # the full grid
    python benchmarks/bench_stats.py --resamples 2000 --dpi 100 --out /tmp/bench
"""

import argparse
import os
import tempfile
import time
from pathlib import Path

from tests.synthetic import full_grid, synthetic_answers
from workflow_scripts.stats.figures import FigureData, draw_figure
from workflow_scripts.stats.outputs import ANSWERS, FIGURES, TABLES
from workflow_scripts.stats.report import render_results
from workflow_scripts.stats.settings import settings_from_config
from workflow_scripts.stats.tables import compute_tables, write_tables

BENIGN = ("good_medical", "technical_vehicles", "technical_kl", "misalignment_kl")  # as config/config.yaml


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--dpi", type=int, default=300)
    parser.add_argument("--answers-per-question", type=int, default=50)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=None, help="keep the outputs here (default: a temp dir)")
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="bench_stats_"))
    out.mkdir(parents=True, exist_ok=True)

    timings: list[tuple[str, float]] = []
    load_before = os.getloadavg()[0]

    def timed(name, function, *a, **k):
        start = time.perf_counter()
        result = function(*a, **k)
        timings.append((name, time.perf_counter() - start))
        return result

    grid = full_grid(answers_per_question=args.answers_per_question, seeds=tuple(range(args.seeds)))
    answers = timed("synthetic answers", synthetic_answers, grid)
    block = {
        "bootstrap_resamples": args.resamples,
        "figure_dpi": args.dpi,
        "hypotheses": {"H1": {"personas": ["sycophancy"], "direction": "lower"},
                       "H2": {"personas": ["goodness", "loving"], "direction": "higher"}},
    }
    roles = {d: "benign" if d in BENIGN else "em" for d in grid.datasets}
    settings = settings_from_config(block, grid.models, grid.personas, grid.datasets, roles=roles,
                                    seeds=grid.seeds, samples_per_question=args.answers_per_question)
    tables = timed("statistics (all tables)", compute_tables, answers, settings)
    paths = {name: out / "tables" / f"{name}.csv" for name in TABLES}
    timed("write tables (CSV)", write_tables, tables, paths)
    data = FigureData.from_frames({**tables, ANSWERS: answers}, settings)
    for name in FIGURES:
        timed(f"figure {name}", draw_figure, name, data, out / f"{name}.png")
    text = timed("RESULTS.md", render_results, tables, settings, [f"{n}.png" for n in FIGURES])
    (out / "RESULTS.md").write_text(text)

    stats_s = sum(t for n, t in timings if n.startswith("statistics"))
    figures_s = sum(t for n, t in timings if n.startswith("figure"))
    total = sum(t for n, t in timings if n != "synthetic answers")
    print(f"grid: {answers.height} answers, {tables['conditions'].height} conditions, "
          f"{args.resamples} resamples, {args.dpi} dpi, {os.cpu_count()} CPUs, "
          f"load average {load_before:.1f} before, {os.getloadavg()[0]:.1f} after")
    print("| stage | seconds |\n| --- | ---: |")
    for name, seconds in timings:
        print(f"| {name} | {seconds:.2f} |")
    print(f"| **statistics** | **{stats_s:.1f}** |\n| **{len(FIGURES)} figures** | **{figures_s:.1f}** |")
    print(f"| **total (without generating the data)** | **{total:.1f}** |")
    print(f"outputs in {out}")


if __name__ == "__main__":
    main()
