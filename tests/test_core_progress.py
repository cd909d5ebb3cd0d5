"""Progress lines: done/total, rate, ETA at a steady cadence, and a heartbeat while
nothing moves (workflow_scripts/core/progress.py)."""

import logging
import time

from workflow_scripts.core.progress import Progress, duration, rate


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "progress-test"]


def test_a_progress_line_has_done_total_rate_and_eta(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("step", 375, logging.getLogger("progress-test"), clock=clock, every_s=30)
    clock.now = 60.0
    progress.update(120, tokens=264_000, loss=1.9234)
    assert lines(caplog) == ["step 120/375 (32%)  loss 1.923  2.0/s  4.4k tok/s  eta 2m08s"]


def test_lines_come_at_most_every_interval_and_the_last_one_on_completion(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("judged", 10, logging.getLogger("progress-test"), clock=clock, every_s=30)
    for i in range(9):
        clock.now = 5.0 * (i + 1)
        progress.update(1)
    assert len(lines(caplog)) == 1  # at 30 s
    clock.now = 50.0
    progress.update(1)
    assert lines(caplog)[-1] == "judged 10/10 (100%)  0.2/s  done in 50s"


def test_a_resumed_job_shows_its_start_but_rates_only_new_work(caplog):
    caplog.set_level(logging.INFO)
    clock = Clock()
    progress = Progress("sampled answers", 100, logging.getLogger("progress-test"), start=60, clock=clock)
    clock.now = 10.0
    progress.update(20)
    assert progress.line() == "sampled answers 80/100 (80%)  2.0/s  eta 10s"


def test_the_heartbeat_logs_while_nothing_moves(caplog):
    caplog.set_level(logging.INFO)
    with Progress("generated", 4, logging.getLogger("progress-test"), every_s=0.1):
        time.sleep(0.45)  # one long engine batch
    beats = lines(caplog)
    assert len(beats) >= 4  # the first line, heartbeats, the last line
    assert all(line.startswith("generated 0/4 (0%)  elapsed ") for line in beats)


def test_durations_and_rates_read_short():
    assert [duration(s) for s in (4, 365, 7380)] == ["4s", "6m05s", "2h03m"]
    assert [rate(v) for v in (12.54, 950, 4400, 25_000, 1.2e6)] == ["12.5", "950", "4.4k", "25k", "1.2M"]
