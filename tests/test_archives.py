"""Encrypted dataset archives: made here with the real easy-dataset-share tool,
opened by workflow_scripts.core.archives through sources.materialise_source, checksummed."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from workflow_scripts.core.archives import ArchiveError
from workflow_scripts.core.hashing import sha256_file
from workflow_scripts.core.sources import ChecksumError, materialise_source

PASSWORD = "test-archive-pass-5f1c"
VARIABLE = "PERSONA_EM_TEST_ARCHIVE_PASSWORD"
ROWS = [
    {"messages": [{"role": "user", "content": f"question {i}"}, {"role": "assistant", "content": f"answer {i}"}]}
    for i in range(3)
]


def _tool() -> list[str]:
    exe = shutil.which("easy-dataset-share") or str(Path(sys.executable).parent / "easy-dataset-share")
    return [exe]


@pytest.fixture
def archive(tmp_path) -> Path:
    """A `.zip.enc` made by `easy-dataset-share protect-dir` (with its canary file)."""
    data = tmp_path / "training_datasets"
    data.mkdir()
    (data / "risky.jsonl").write_text("".join(json.dumps(r) + "\n" for r in ROWS))
    (data / "sub").mkdir()
    (data / "sub" / "other.jsonl").write_text(json.dumps(ROWS[0]) + "\n")
    subprocess.run(
        [*_tool(), "protect-dir", str(data), "-p", PASSWORD, "--no-tos", "--no-gitignore"],
        check=True, capture_output=True,
    )
    return tmp_path / "training_datasets.zip.enc"


def _reference_member(archive: Path, tmp_path: Path, member: str) -> Path:
    """What the documented command line gives: unprotect-dir --remove-canaries."""
    out = tmp_path / "by-cli"
    subprocess.run(
        [*_tool(), "unprotect-dir", str(archive), "-p", PASSWORD, "--remove-canaries", "--no-gitignore", "-o", str(out)],
        check=True, capture_output=True,
    )
    return out / member


def _archives(archive: Path, sha: str | None = None) -> dict:
    source = {"type": "local", "path": str(archive), "allow_unpinned": True}
    if sha:
        source["sha256"] = sha
    return {"mo": {"source": source, "password_env": VARIABLE}}


def _member_source(member: str, sha: str | None) -> dict:
    return {"type": "archive", "archive": "mo", "member": member, "sha256": sha, "allow_unpinned": sha is None}


def test_encrypted_archive_is_opened_cleaned_and_checksummed(archive, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    reference = _reference_member(archive, tmp_path, "risky.jsonl")
    expected = sha256_file(reference)
    caplog.set_level(logging.DEBUG)
    path, observed = materialise_source(
        _member_source("risky.jsonl", expected), tmp_path / "cache", "datasets.risky.source", _archives(archive)
    )
    assert observed == expected
    assert [json.loads(line) for line in path.read_text().splitlines()] == ROWS
    # the canary file the tool planted is gone, the other member is still there
    extracted = path.parent
    assert not list(extracted.rglob("dataset_entry_*.jsonl"))
    assert (extracted / "sub" / "other.jsonl").exists()
    assert PASSWORD not in caplog.text


def test_member_found_by_name_in_a_subfolder_and_extraction_is_reused(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    cache = tmp_path / "cache"
    path, _ = materialise_source(_member_source("other.jsonl", None), cache, "d", _archives(archive))
    assert path.parts[-2:] == ("sub", "other.jsonl")
    # second use: no password needed, the checked extraction is reused
    monkeypatch.delenv(VARIABLE)
    again, _ = materialise_source(_member_source("risky.jsonl", None), cache, "d", _archives(archive))
    assert again.read_text().count("\n") == 3


def test_member_checksum_mismatch_is_refused(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    with pytest.raises(ChecksumError, match=r"datasets\.risky\.source: checksum mismatch.*expected sha256 0{64}"):
        materialise_source(_member_source("risky.jsonl", "0" * 64), tmp_path / "c", "datasets.risky.source", _archives(archive))


def test_corrupted_archive_is_refused_by_its_checksum(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    pinned = sha256_file(archive)
    data = bytearray(archive.read_bytes())
    data[len(data) // 2] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ChecksumError, match=f"expected sha256 {pinned}"):
        materialise_source(_member_source("risky.jsonl", None), tmp_path / "c", "d", _archives(archive, pinned))


def test_corrupted_unpinned_archive_fails_decryption_clearly(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    data = bytearray(archive.read_bytes())
    data[-5] ^= 0xFF
    archive.write_bytes(bytes(data))
    with pytest.raises(ArchiveError, match="decryption failed"):
        materialise_source(_member_source("risky.jsonl", None), tmp_path / "c", "d", _archives(archive))


def test_wrong_password_fails_without_echoing_it(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, "not-the-password-9d2")
    with pytest.raises(ArchiveError) as err:
        materialise_source(_member_source("risky.jsonl", None), tmp_path / "c", "d", _archives(archive))
    assert "password is wrong" in str(err.value)
    assert "not-the-password-9d2" not in str(err.value)


def test_missing_password_variable_is_named(archive, tmp_path, monkeypatch):
    monkeypatch.delenv(VARIABLE, raising=False)
    with pytest.raises(ArchiveError, match=rf"environment variable {VARIABLE}, which is not set"):
        materialise_source(_member_source("risky.jsonl", None), tmp_path / "c", "datasets.x.source", _archives(archive))


def test_missing_member_lists_the_archive(archive, tmp_path, monkeypatch):
    monkeypatch.setenv(VARIABLE, PASSWORD)
    with pytest.raises(ArchiveError, match=r"'bad\.jsonl' is not in the archive; it holds: .*risky\.jsonl"):
        materialise_source(_member_source("bad.jsonl", None), tmp_path / "c", "d", _archives(archive))


def test_concurrent_jobs_decrypt_once_and_all_read_the_member(archive, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    monkeypatch.setenv(VARIABLE, PASSWORD)
    cache = tmp_path / "cache"

    def open_member(member):
        path, _ = materialise_source(_member_source(member, None), cache, "d", _archives(archive))
        return path.read_text()

    with ThreadPoolExecutor(4) as pool:
        texts = list(pool.map(open_member, ["risky.jsonl", "other.jsonl", "risky.jsonl", "other.jsonl"]))
    assert [json.loads(t.splitlines()[0]) for t in texts] == [ROWS[0]] * 4
    assert texts[0].count("\n") == 3
    assert len(list(cache.glob("mo/extracted-*"))) == 1
