"""The run estimate (workflow_scripts/core/estimate.py): its measured numbers match the
benchmark files they cite, its arithmetic, and its job counts against Snakemake's."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from workflow_scripts.core import estimate
from workflow_scripts.judging.estimate import load_config

REPO = Path(__file__).resolve().parents[1]
TABLE = estimate.load_table()
QWEN = estimate.ModelShape(
    **{k: v for k, v in TABLE["model_shapes"]["Qwen/Qwen2.5-7B-Instruct"].items()}
)


def test_em_throughputs_match_their_benchmark_file():
    rows = {}
    for line in (REPO / TABLE["em_sft"]["source"]).read_text().splitlines():
        row = json.loads(line)
        rows[row.get("variant")] = row
    for batching, entry in TABLE["em_sft"]["by_batching"].items():
        measured = rows[entry["variant"]]
        assert measured["batching"] == batching
        assert entry["tokens_per_s"] == pytest.approx(measured["tokens_per_s"], rel=1e-4)
        assert entry["mfu"] == pytest.approx(measured["mfu"], abs=1e-4)
        assert entry["params"] == measured["params"]


def test_sampling_throughputs_match_their_benchmark_file():
    s = TABLE["sampling"]
    bench = json.loads((REPO / s["source"]).read_text())
    for key in ("control", "lora"):
        entry = s[key]
        (row,) = [
            r
            for r in bench["rows"]
            if r["variant"] == entry["variant"]
            and r["batch"] == entry["batch"]
            and r["new_tokens"] == entry["new_tokens"]
        ]
        assert entry["tokens_per_s"] == pytest.approx(row["tokens_per_s"], rel=1e-4)
    info = bench["info"]
    assert s["load_s_per_gb"] == pytest.approx(
        info["engine_load_s"]["cold"] / info["weights_GB"], rel=1e-3
    )
    assert s["save_s_per_gb"] == pytest.approx(info["save_s"] / info["weights_GB"], rel=1e-3)
    assert TABLE["gpus"]["h100"]["memory_bandwidth_tbps"] == info["copy_bandwidth_TBps"]
    assert s["params"] == pytest.approx(info["params_B"] * 1e9)


def test_lora_parameters_of_the_em_adapter():
    # rsLoRA r 32 on all seven linear layers of Qwen2.5-7B: 80.7 M, as peft reports.
    targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]
    assert QWEN.lora_params(32, targets) == 80_740_352
    assert QWEN.lora_params(16, ["q_proj"]) == 28 * 16 * (3584 + 3584)
    with pytest.raises(ValueError, match="lm_head"):
        QWEN.lora_params(8, ["lm_head"])


def test_em_rate_reproduces_the_measurement_and_scales_with_peak_and_size():
    packed = TABLE["em_sft"]["by_batching"]["packed"]
    assert estimate.em_tokens_per_s(TABLE, "h200", "packed", packed["params"]) == pytest.approx(
        packed["tokens_per_s"], rel=1e-3
    )
    a100 = estimate.em_tokens_per_s(TABLE, "a100_64gb", "packed", packed["params"])
    assert a100 == pytest.approx(packed["tokens_per_s"] * 312 / 790, rel=1e-3)
    assert estimate.em_tokens_per_s(TABLE, "h200", "packed", 2 * packed["params"]) == pytest.approx(
        packed["tokens_per_s"] / 2, rel=1e-3
    )


def test_decode_rate_scales_with_bandwidth():
    lora = TABLE["sampling"]["lora"]["tokens_per_s"]
    assert estimate.decode_tokens_per_s(
        TABLE, "h100", TABLE["sampling"]["params"], lora=True
    ) == pytest.approx(lora)
    assert estimate.decode_tokens_per_s(
        TABLE, "a100_64gb", TABLE["sampling"]["params"], lora=True
    ) == pytest.approx(lora * 1.6 / 3.01)


def test_steps_and_checkpoint_plans():
    assert estimate.em_steps(6000, 1, 16) == 375
    assert estimate.em_steps(6000, 2, 16) == 750
    assert estimate.em_steps(6000, 1, 16, max_steps=10) == 10
    em = {"save_steps": 100}
    # Without analysis checkpoints: every save_steps checkpoint, with optimizer state, kept.
    assert estimate.analysis_plan(em, 375) == (3, 12, False)
    assert estimate.analysis_plan({**em, "analysis_checkpoints": 25}, 375) == (15, 2, True)
    assert estimate.analysis_plan(
        {**em, "analysis_checkpoints": {"every": 50, "dtype": "float32"}}, 375
    ) == (7, 4, True)
    assert estimate.analysis_plan({**em, "analysis_checkpoints": 0}, 375) == (0, 2, True)
    # the schema's form: log-spaced (with the final step) or every N steps, bf16 adapters
    assert estimate.analysis_plan({**em, "analysis_checkpoints": {"every": 0, "log_spaced": 10}}, 375) == (
        10, 2, True)
    assert estimate.analysis_plan({**em, "analysis_checkpoints": {"every": 50, "log_spaced": 10}}, 375) == (
        8, 2, True)
    assert estimate.analysis_plan({**em, "analysis_checkpoints": {"every": 0, "log_spaced": 0}}, 375) == (
        3, 12, False)
    assert estimate.analysis_plan({**em, "analysis_checkpoints": [10, 100, 400]}, 375) == (
        2,
        2,
        True,
    )


def test_storage_advice():
    assert estimate.storage_advice(900, 1000).startswith("fits")
    advice = estimate.storage_advice(2286, 1000)
    assert "ask for 2800 GB" in advice


def test_full_study_prints_gpu_hours_storage_and_cost(capsys):
    assert (
        estimate.main(
            ["--configfile", str(REPO / "config" / "config.yaml"), "--results", "/nonexistent"]
        )
        == 0
    )
    out = capsys.readouterr().out
    stages = {
        line.split()[0]: line.split()[1:4]
        for line in out.splitlines()
        if re.match(r"^\w+\s+\d+\s", line)
    }
    assert stages["em_sft"][0] == "576"
    assert float(stages["em_sft"][1]) > 10  # 576 runs of 7-8 B models on A100s
    assert float(stages["fold_persona"][2]) == pytest.approx(22 * 15.6, rel=0.05)
    assert re.search(r"^GPU-hours \(a100_64gb\): \d+", out, re.M)
    assert re.search(r"^storage: (fits|exceeds)", out, re.M)
    assert re.search(r"^judge: openai .* requests .* USD", out, re.M)
    # H3: every persona's 10 checkpoints a run x 4 EM datasets x 3 seeds x 8 questions x n 10
    assert stages["h3_sample"][0] == "24" and float(stages["h3_sample"][1]) > 0
    assert re.search(r"^judge, H3: 460800 requests, about [\d.]+ USD", out, re.M)


@pytest.mark.parametrize("configfile", ["config/offline.yaml", "config/config.yaml"])
def test_job_counts_match_snakemake(configfile):
    out = subprocess.run(
        [sys.executable, "-m", "snakemake", "-n", "--configfile", configfile],
        cwd=REPO,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    ).stdout
    stats = out.split("Job stats:")[1].split("total")[0]
    dry = {m.group(1): int(m.group(2)) for m in re.finditer(r"^(\w+)\s+(\d+)$", stats, re.M)}
    counted = estimate.job_counts(load_config([REPO / configfile]))
    assert counted == {rule: n for rule, n in dry.items() if rule in counted}
    assert set(counted) <= set(dry)


def test_folds_on_a_scratch_area_leave_the_quota():
    config = load_config([REPO / "config" / "config.yaml"])
    config["em_training"]["analysis_checkpoints"] = 100
    stages = estimate.estimate_stages(config, TABLE, "a100_64gb", Path("/nonexistent"), 16)
    on_results = sum(s.storage_gb for s in stages if s.on_results)
    config["storage"]["folded_models_dir"] = "$SCRATCH/persona-em"
    stages = estimate.estimate_stages(config, TABLE, "a100_64gb", Path("/nonexistent"), 16)
    (fold,) = [s for s in stages if s.stage == "fold_persona"]
    assert not fold.on_results and "$SCRATCH/persona-em" in fold.note
    assert sum(s.storage_gb for s in stages if s.on_results) == pytest.approx(
        on_results - fold.storage_gb
    )
    assert estimate.storage_advice(on_results - fold.storage_gb, 1000).startswith("fits")


def test_gpus_per_job_multiply_what_holds_every_gpu_and_h4_is_counted():
    config = load_config([REPO / "config" / "config.yaml"])
    one = {s.stage: s for s in estimate.estimate_stages(config, TABLE, "a100_64gb", Path("/nonexistent"), 16)}
    for entry in config["models"].values():
        entry["gpus"] = 2
    two = {s.stage: s for s in estimate.estimate_stages(config, TABLE, "a100_64gb", Path("/nonexistent"), 16)}
    # a fold is a load and a save: every GPU of the job is held for it
    assert two["fold_persona"].gpu_hours == pytest.approx(2 * one["fold_persona"].gpu_hours)
    # training is FLOP-bound: the same GPU-hours over two GPUs
    assert two["em_sft"].gpu_hours == pytest.approx(one["em_sft"].gpu_hours)
    assert one["sample_persona"].gpu_hours < two["sample_persona"].gpu_hours < 2 * one["sample_persona"].gpu_hours
    h4 = one["h4"]
    assert h4.jobs == sum(estimate.h4_job_counts(config).values()) > 0
    assert h4.gpu_hours > 0
    config["h4"]["enabled"] = False
    stages = estimate.estimate_stages(config, TABLE, "a100_64gb", Path("/nonexistent"), 16)
    assert "h4" not in {s.stage for s in stages}


def test_the_estimate_counts_each_secondary_judges_requests_and_cost(tmp_path, capsys):
    from workflow_scripts.judging.estimate import estimate_judges, totals

    config = load_config([REPO / "config" / "config.yaml"])
    config["judges"] = {
        "secondary": {
            "gpt4o": {"judge": {"kind": "openai", "model": "gpt-4o-2024-08-06", "price_per_mtok_input": 2.5,
                                "price_per_mtok_output": 10.0}, "subsample": {"share": 0.1}},
            "qwen": {"judge": {"kind": "vllm_server", "model": "qwen2.5-7b", "api_key_env": None}},
        },
        "subsample": {"share": 1.0, "low_score_below": 30, "low_score_weight": 3, "seed": 0},
        "agreement_min_answers": 10,
    }  # fmt: skip
    judges = estimate_judges(config, tmp_path)
    primary, gpt4o, qwen = (totals(judges[name]) for name in ("judge", "gpt4o", "qwen"))
    cells = len(judges["judge"])
    assert gpt4o["answers"] == cells * 40  # ceil(0.1 x 8 questions x 50 answers) per cell
    assert gpt4o["to_send"] == gpt4o["answers"] * 2 and qwen["to_send"] == primary["to_send"]
    # the same prompts at 2.5 / 10 USD per Mtok instead of 0.4 / 1.6, on a tenth of the answers
    assert gpt4o["cost_usd"] == pytest.approx(primary["cost_usd"] * 0.1 * 2.5 / 0.4, rel=0.02)
    assert qwen["cost_usd"] == 0.0  # self-served: not billed
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    assert estimate.main(["--configfile", str(tmp_path / "config.yaml"), "--results", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"^secondary judge gpt4o: openai gpt-4o-2024-08-06: {gpt4o['to_send']} requests", out, re.M)
    assert re.search(r"^all judges: \d+ requests, about [\d.]+ USD", out, re.M)
