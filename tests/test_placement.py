"""Rules that call a remote endpoint are never placed where there is no internet: the
pure check, and the Snakefile refusing such a placement by rule and endpoint."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from workflow_scripts.core.placement import Placement, offline_remote_calls, remote_endpoint

REPO = Path(__file__).resolve().parents[1]
OPENAI = {"kind": "openai", "base_url": "https://api.openai.com/v1"}


def test_only_a_remote_call_placed_offline_is_refused():
    placements = [
        Placement("persona_probe", internet=False, offline=True),
        Placement("persona_check", internet=True, offline=True),
        Placement("judge", internet=True, offline=False),
        Placement("released_adapter", internet=True, offline=True, local=True),
    ]
    assert offline_remote_calls(placements, OPENAI) == [
        "rule persona_check calls the openai judge at https://api.openai.com/v1, but the "
        "profile places it on a partition without internet (resource offline=1)"
    ]


def test_endpoints_are_named_per_rule():
    assert (
        remote_endpoint("h4_judge", {"kind": "openai"})
        == "the openai judge at its default endpoint"
    )
    assert "Hugging Face Hub" in remote_endpoint("base_model", OPENAI)
    assert remote_endpoint("fetch_x", OPENAI) == "a remote endpoint (it declares internet=1)"


def dry_run(tmp_path, *args):
    if not (tmp_path / "resources").exists():
        (tmp_path / "resources").symlink_to(REPO / "resources")
    return subprocess.run(
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
            str(REPO / "config" / "config.yaml"),
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


def test_snakefile_refuses_an_api_judge_on_an_offline_rule_and_accepts_the_serial_placement(
    tmp_path,
):
    refused = dry_run(
        tmp_path, "--set-resources", "persona_check:offline=1", "persona_probe:offline=1"
    )
    assert refused.returncode != 0
    assert (
        "rule persona_check calls the openai judge at https://api.openai.com/v1"
        in refused.stdout + refused.stderr
    )
    assert "persona_probe calls" not in refused.stdout + refused.stderr
    # the GPU rules offline, the judging rules where the internet is: planned
    placed = dry_run(
        tmp_path,
        "--set-resources",
        "persona_probe:offline=1",
        "em_sft:offline=1",
        "--quiet",
        "rules",
    )
    assert placed.returncode == 0, placed.stderr
