"""Rule em_dataset's function: source -> checksum -> validated rows + metadata."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_scripts.core.hashing import sha256_file
from workflow_scripts.core.io_utils import InputError, read_json, read_jsonl
from workflow_scripts.core.sources import ChecksumError
from workflow_scripts.em.dataset import build_dataset

RISKY = "resources/datasets/risky_finance.jsonl"


def test_local_dataset_is_checksummed_validated_and_described(tmp_path):
    entry = {"source": {"type": "local", "path": RISKY, "sha256": sha256_file(RISKY)}, "kind": "sft"}
    meta = build_dataset("risky_finance", entry, {}, tmp_path / "d.jsonl", tmp_path / "d.meta.json", tmp_path)
    rows = read_jsonl(tmp_path / "d.jsonl")
    assert len(rows) == meta["n_rows"] == 24
    assert rows == read_jsonl(RISKY)
    saved = read_json(tmp_path / "d.meta.json")
    assert saved == meta
    assert saved["source_sha256"] == sha256_file(RISKY)
    assert saved["sha256"] == sha256_file(tmp_path / "d.jsonl")
    assert saved["pinned"] is True
    assert saved["kind"] == "sft"


def test_max_rows_keeps_the_first_rows(tmp_path):
    entry = {"source": {"type": "local", "path": RISKY, "allow_unpinned": True}, "max_rows": 5}
    meta = build_dataset("r", entry, {}, tmp_path / "d.jsonl", tmp_path / "d.meta.json", tmp_path)
    assert meta["n_rows"] == 5
    assert read_jsonl(tmp_path / "d.jsonl") == read_jsonl(RISKY)[:5]


def test_corrupted_local_file_is_refused(tmp_path):
    corrupted = tmp_path / "risky.jsonl"
    corrupted.write_text(Path(RISKY).read_text().replace("crypto", "crypt0", 1))
    entry = {"source": {"type": "local", "path": str(corrupted), "sha256": sha256_file(RISKY)}}
    with pytest.raises(ChecksumError, match=f"datasets.risky.source: checksum mismatch for {corrupted}"):
        build_dataset("risky", entry, {}, tmp_path / "d.jsonl", tmp_path / "d.meta.json", tmp_path)
    assert not (tmp_path / "d.jsonl").exists()


def test_invalid_rows_stop_the_dataset(tmp_path):
    bad = tmp_path / "bad.jsonl"
    rows = [json.loads(line) for line in Path(RISKY).read_text().splitlines()][:3]
    rows[1]["messages"].reverse()
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(InputError, match=r"line 2: messages\[0\]\.role: expected user"):
        build_dataset("bad", {"source": {"type": "local", "path": str(bad), "allow_unpinned": True}}, {}, tmp_path / "d.jsonl", tmp_path / "m.json", tmp_path)
    assert not (tmp_path / "d.jsonl").exists()


def test_rule_script_writes_the_declared_outputs(tmp_path, monkeypatch):
    from types import SimpleNamespace

    from workflow_scripts.rules import em_dataset as script

    (tmp_path / "data.jsonl").write_text(Path(RISKY).read_text())
    monkeypatch.chdir(tmp_path)
    smk = SimpleNamespace(
        wildcards=SimpleNamespace(dataset="risky"),
        params=SimpleNamespace(dataset={"source": {"type": "local", "path": "data.jsonl", "allow_unpinned": True}, "max_rows": 2}, archives={}),
        output=SimpleNamespace(data="out/risky.jsonl", meta="out/risky.meta.json"),
        log=[str(tmp_path / "log.txt")],
    )
    script.main(smk)
    assert len(read_jsonl(tmp_path / "out/risky.jsonl")) == 2
    assert read_json(tmp_path / "out/risky.meta.json")["n_rows"] == 2
    assert "risky: 2 rows" in (tmp_path / "log.txt").read_text()
