"""Speed of the first-study import and reproduction on the real archive.

    python benchmarks/first_study_import.py [ARCHIVE]

Prints one row per stage: wall seconds, CPU seconds, rows. Target: the whole import
and analysis in a few minutes on a 2-core machine.
"""

import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # this checkout's workflow_scripts, not an installed copy

from workflow_scripts.first_study.importer import (  # noqa: E402
    ImportSettings,
    apply_policy,
    read_judge_runs,
)
from workflow_scripts.first_study.reproduction import reproduce  # noqa: E402

DEFAULT = (
    Path(__file__).resolve().parents[2] / "shared" / "data" / "first-study-gpt41mini-evals.tar.xz"
)


def timed(label, rows, answers, fn, *args, **kwargs):
    wall, cpu = time.perf_counter(), time.process_time()
    result = fn(*args, **kwargs)
    rows.append((label, time.perf_counter() - wall, time.process_time() - cpu, answers))
    return result


def main(archive: Path) -> None:
    rows: list = []
    wall, cpu = time.perf_counter(), time.process_time()
    runs = read_judge_runs(archive, ImportSettings())
    rows.append(
        (
            "import (201 files, read in place)",
            time.perf_counter() - wall,
            time.process_time() - cpu,
            runs.height,
        )
    )
    for policy in ("largest_run", "all_runs"):
        answers = apply_policy(runs, policy).height
        timed(f"reproduction, policy {policy}", rows, answers, reproduce, runs, {}, policy=policy)
    print(f"{'stage':<40} {'wall s':>8} {'cpu s':>8} {'answers':>8}")
    for label, wall, cpu, answers in rows:
        print(f"{label:<40} {wall:>8.1f} {cpu:>8.1f} {answers:>8}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT)
