"""benchmarks/rule_times.py: the per-rule table of a run's benchmark files."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import rule_times  # noqa: E402

HEADER = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"

LOG = """\
Building DAG of jobs...
[Wed Dec  2 01:55:44 2026]
localrule em_dataset:
    input: resources/datasets/risky_finance.jsonl
    log: logs/em_dataset/risky_finance.log
    benchmark: logs/benchmarks/em_dataset/risky_finance.tsv
    wildcards: dataset=risky_finance
Shell command: None
[Wed Dec  2 01:56:04 2026]
rule import_first_study:
    benchmark: logs/benchmarks/first_study/import.tsv
[Wed Dec  2 02:05:44 2026]
Finished jobid: 6 (Rule: import_first_study)
"""


def bench(run: Path, relative: str, seconds: float, rss: str = "812.5", cpu: str = "3.5") -> None:
    path = run / "logs" / "benchmarks" / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(HEADER + f"{seconds}\t0:00:01\t{rss}\t0\t0\t0\t0\t0\t95.0\t{cpu}\n")


@pytest.fixture
def run(tmp_path) -> Path:
    bench(tmp_path, "sample/smollm2-135m/goodness.tsv", 30.0, rss="900.0", cpu="50.0")
    bench(tmp_path, "sample/smollm2-135m/baseline.tsv", 10.0, rss="1200.0", cpu="-")
    bench(tmp_path, "em_dataset/risky_finance.tsv", 2.5)
    bench(tmp_path, "eval_questions.tsv", 1.5, rss="-", cpu="-")
    bench(tmp_path, "first_study/import.tsv", 6.0)
    return tmp_path


def test_rules_are_summed_from_their_files_largest_first(run):
    rows = {r.rule: r for r in rule_times.rule_times(run)}
    assert [r.rule for r in rule_times.rule_times(run)] == [
        "sample", "first_study", "em_dataset", "eval_questions",
    ]  # fmt: skip
    sample = rows["sample"]
    assert (sample.jobs, sample.seconds, sample.longest_s) == (2, 40.0, 30.0)
    assert sample.cpu_seconds == 50.0  # the job without a CPU figure is left out, not zero
    assert sample.max_rss_mb == 1200.0
    assert rows["eval_questions"].cpu_seconds is None and rows["eval_questions"].max_rss_mb is None


def test_snakemake_log_names_the_rule_and_the_run_wall_clock(run):
    log = rule_times.parse_snakemake_log(LOG)
    assert log.rule_of["logs/benchmarks/first_study/import.tsv"] == "import_first_study"
    assert log.wall_seconds == 600.0
    rules = {r.rule for r in rule_times.rule_times(run, log)}
    assert "import_first_study" in rules and "first_study" not in rules
    assert "sample" in rules  # a file the log does not name keeps its directory's rule


def test_table_shares_add_up_and_say_the_totals(run):
    table = rule_times.markdown(rule_times.rule_times(run), wall_seconds=61.0)
    lines = table.splitlines()
    assert lines[2] == "| sample | 2 | 40.0 | 80.0% | 20.0 | 30.0 | 50.0 | 1200 |"
    assert "| eval_questions | 1 | 1.5 | 3.0% | 1.5 | 1.5 | — | — |" in lines
    assert lines[-1] == "5 jobs of 4 rules; the jobs' wall times sum to 50 s; the run took 61 s from its first to its last log line."


def test_main_reads_the_newest_snakemake_log_of_the_run(run, capsys):
    logs = run / ".snakemake" / "log"
    logs.mkdir(parents=True)
    (logs / "2026-12-01T000000.000000.snakemake.log").write_text("[Tue Dec  1 00:00:00 2026]\n")
    (logs / "2026-12-02T015544.000000.snakemake.log").write_text(LOG)
    assert rule_times.main([str(run)]) == 0
    out = capsys.readouterr().out
    assert "| import_first_study | 1 | 6.0 |" in out and "the run took 600 s" in out


def test_bad_benchmark_files_are_named(tmp_path, run):
    empty = run / "logs" / "benchmarks" / "judge.tsv"
    empty.write_text(HEADER)
    with pytest.raises(ValueError, match=r"judge\.tsv: benchmark file has no data row"):
        rule_times.rule_times(run)
    with pytest.raises(FileNotFoundError, match="no benchmark directory"):
        rule_times.rule_times(tmp_path / "elsewhere")
