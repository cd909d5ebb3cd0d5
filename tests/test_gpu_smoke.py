"""The GPU smoke run's pieces that run anywhere: its config plans every GPU rule, the
per-rule table reads benchmark files and job logs, and jobs log their peak GPU memory."""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import types
from pathlib import Path

import yaml

from workflow_scripts.core import job

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks" / "gpu_smoke"))
import table  # noqa: E402

GPU_RULES = {
    "persona_prompts",
    "persona_teacher",
    "persona_student",
    "persona_dpo",
    "persona_introspection",
    "persona_sft",
    "fold_persona",
    "persona_probe",
    "em_sft",
    "sample_persona",
    # the judging rules: the smoke config's local judge scores on the GPU (judge.gpus)
    "judge",
    "persona_check",
}


def test_smoke_config_plans_every_gpu_rule_with_a_gpu(tmp_path):
    config = yaml.safe_load((REPO / "config" / "gpu_smoke.yaml").read_text())
    (model,) = config["models"].values()
    assert model["source"] == "local" and model["dtype"] == "bfloat16"
    assert config["sampling"]["engine"] == "transformers" and config["judge"]["kind"] == "local"
    (tmp_path / "resources").symlink_to(REPO / "resources")
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "snakemake",
            "-n",
            "--snakefile",
            str(REPO / "Snakefile"),
            "--directory",
            str(tmp_path),
            "--configfile",
            str(REPO / "config" / "gpu_smoke.yaml"),
            "--until",
            "judge",
            "persona_check",
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    ).stdout
    stats = out.split("Job stats:")[1].split("total")[0]
    planned = set(re.findall(r"^(\w+)\s+\d+$", stats, re.M))
    assert planned >= GPU_RULES
    gpu_jobs = {
        m.group(1)
        for m in re.finditer(r"^rule (\w+):(?:\n    .*)*?\n    resources: .*gpu=1", out, re.M)
    }
    assert gpu_jobs == GPU_RULES


def test_table_reads_wall_time_and_peak_memory(tmp_path):
    bench = tmp_path / "benchmarks" / "em_sft" / "m" / "p"
    bench.mkdir(parents=True)
    header = "s\th:m:s\tmax_rss\n"
    (bench / "a.tsv").write_text(header + "12.5\t0:00:12\t100\n")
    (bench / "b.tsv").write_text(header + "7.5\t0:00:07\t100\n")
    (tmp_path / "benchmarks" / "eval_questions.tsv").write_text(header + "1.0\t0:00:01\t10\n")
    log = tmp_path / "em_sft" / "m" / "p" / "a.log"
    log.parent.mkdir(parents=True)
    log.write_text(
        "x INFO persona_em: peak GPU memory: 3.250 GiB allocated, 4.000 GiB reserved (NVIDIA H200)\n"
    )
    (log.parent / "b.log").write_text(
        "x INFO persona_em: peak GPU memory: 1.500 GiB allocated, 2.000 GiB reserved (NVIDIA H200)\n"
    )
    rows = {r.rule: r for r in table.rule_rows(tmp_path)}
    assert (
        rows["em_sft"].jobs == 2
        and rows["em_sft"].wall_s == 20.0
        and rows["em_sft"].max_job_s == 12.5
    )
    assert rows["em_sft"].peak_gib == 3.25 and rows["em_sft"].cuda_jobs == 2
    assert rows["eval_questions"].peak_gib is None
    text = table.markdown(list(rows.values()))
    assert (
        "| em_sft | 2 | 20.0 | 12.5 | 2 | 3.25 |" in text
        and "| eval_questions | 1 | 1.0 | 1.0 | 0 | — |" in text
    )
    assert "NVIDIA H200" in text


def test_jobs_log_peak_gpu_memory_only_after_cuda(monkeypatch, caplog):
    cuda = types.SimpleNamespace(
        is_initialized=lambda: True,
        max_memory_allocated=lambda: 3 * 2**30,
        max_memory_reserved=lambda: 4 * 2**30,
        get_device_name=lambda: "Fake GPU",
    )
    monkeypatch.setitem(sys.modules, "torch", types.SimpleNamespace(cuda=cuda))
    with caplog.at_level(logging.INFO, logger="persona_em"):
        job.log_peak_gpu_memory()
    assert "peak GPU memory: 3.000 GiB allocated, 4.000 GiB reserved (Fake GPU)" in caplog.text
    assert table.peak_of_line(caplog.records[-1].getMessage()) == (3.0, "Fake GPU")
    caplog.clear()
    cuda.is_initialized = lambda: False
    job.log_peak_gpu_memory()
    assert caplog.text == ""
