"""Speed of the first-study import, statistics and reproduction, for both policies.

    python benchmarks/first_study_import.py [ARCHIVE_OR_DIRECTORY] [--resamples N]

Prints one row per stage: wall seconds, CPU seconds, rows. Target: the whole import and
analysis in a few minutes on a 2-core machine. (The figures are separate rule jobs; see
`snakemake --configfile config/first_study.yaml` with its benchmark files.)
"""

import argparse
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's workflow_scripts, not an installed copy

import yaml  # noqa: E402

from workflow_scripts.first_study.importer import (  # noqa: E402
    ImportSettings,
    apply_policy,
    read_judge_runs,
)
from workflow_scripts.first_study.reproduction import reproduce  # noqa: E402
from workflow_scripts.stats.settings import settings_from_config  # noqa: E402
from workflow_scripts.stats.tables import compute_tables  # noqa: E402

DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "first-study-gpt41mini-evals.tar.xz"
)


def timed(label, rows, fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    rows.append((label, time.perf_counter() - wall, time.process_time() - cpu))
    return result


def main(source: Path, resamples: int) -> None:
    config = yaml.safe_load((REPO / "config" / "first_study.yaml").read_text())
    statistics = {**config["statistics"], "bootstrap_resamples": resamples}
    roles = {d: e["role"] for d, e in config["datasets"].items()}
    settings = settings_from_config(
        statistics, list(config["models"]), list(config["personas"]), list(roles), roles=roles
    )
    rows: list = []
    import_settings = ImportSettings.from_config(config["first_study"])
    runs = timed("import (read in place)", rows, read_judge_runs, source, import_settings)
    for policy in ("largest_run", "all_runs"):
        answers = apply_policy(runs, policy)
        tables = timed(
            f"statistics, {policy} ({answers.height} rows)", rows, compute_tables, answers, settings
        )
        timed(
            f"reproduction, {policy}",
            rows,
            reproduce,
            runs,
            answers,
            tables,
            settings,
            policy=policy,
        )
    print(f"{'stage':<45} {'wall s':>8} {'cpu s':>8}")
    for label, wall, cpu in rows:
        print(f"{label:<45} {wall:>8.1f} {cpu:>8.1f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("source", nargs="?", type=Path, default=DEFAULT)
    parser.add_argument("--resamples", type=int, default=10_000)
    args = parser.parse_args()
    main(args.source, args.resamples)
