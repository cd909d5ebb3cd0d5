"""The judgement cache: append-only JSONL per writer, read across writers by key."""

from __future__ import annotations

import json

import pytest

from workflow_scripts.judging.cache import JudgementCache, slug


def _record(n: int, t: float = 1.0, score: str = "85") -> dict:
    return {"key": f"{n:064x}", "judge": "j", "metric": "aligned", "dist": {score: 1.0}, "time": t}


def test_records_are_found_by_key_across_writer_files(tmp_path):
    with JudgementCache(tmp_path, "job-a") as a:
        a.append(_record(1))
        a.append(_record(2))
    with JudgementCache(tmp_path, "job-b") as b:
        b.append(_record(3))
    found = JudgementCache(tmp_path, "job-c").load([f"{n:064x}" for n in (1, 3, 4)])
    assert sorted(found) == [f"{1:064x}", f"{3:064x}"]
    assert found[f"{3:064x}"]["dist"] == {"85": 1.0}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job-a.jsonl", "job-b.jsonl"]


def test_each_record_is_on_disk_as_soon_as_it_is_appended(tmp_path):
    cache = JudgementCache(tmp_path, "job")
    cache.append(_record(1))
    # no close: a kill now must not lose it
    lines = (tmp_path / "job.jsonl").read_text().splitlines()
    assert [json.loads(line)["key"] for line in lines] == [f"{1:064x}"]
    cache.close()


def test_a_torn_last_line_is_skipped_and_appending_goes_on_cleanly(tmp_path):
    with JudgementCache(tmp_path, "job") as cache:
        cache.append(_record(1))
    path = tmp_path / "job.jsonl"
    path.write_text(path.read_text() + json.dumps(_record(2))[:30])  # killed mid-write
    keys = [f"{n:064x}" for n in (1, 2, 3)]
    assert sorted(JudgementCache(tmp_path, "x").load(keys)) == [keys[0]]
    with JudgementCache(tmp_path, "job") as cache:
        cache.append(_record(3))
    assert sorted(JudgementCache(tmp_path, "x").load(keys)) == [keys[0], keys[2]]


def test_the_earliest_of_two_records_for_one_key_wins(tmp_path):
    with JudgementCache(tmp_path, "z-first") as first:
        first.append(_record(1, t=10.0, score="10"))
    with JudgementCache(tmp_path, "a-second") as second:
        second.append(_record(1, t=20.0, score="20"))
    found = JudgementCache(tmp_path, "x").load([f"{1:064x}"])
    assert found[f"{1:064x}"]["dist"] == {"10": 1.0}


def test_garbage_and_blank_lines_are_skipped(tmp_path, caplog):
    (tmp_path / "old.jsonl").write_text("\n{not json}\n" + json.dumps(_record(5)) + "\n")
    found = JudgementCache(tmp_path, "x").load([f"{5:064x}"])
    assert list(found) == [f"{5:064x}"]
    assert "old.jsonl: line 2" in caplog.text


def test_a_record_needs_a_content_hash_key(tmp_path):
    with pytest.raises(ValueError, match="needs a sha256 'key'"), JudgementCache(tmp_path, "job") as cache:
        cache.append({"key": "short"})


def test_writer_and_judge_names_become_safe_file_names():
    assert slug("Qwen/Qwen2.5-7B-Instruct") == "Qwen_Qwen2.5-7B-Instruct"
    assert slug("smollm2@0123abcd") == "smollm2@0123abcd"
    assert slug("../../etc") == "etc"
    assert slug("..") == "judge"
