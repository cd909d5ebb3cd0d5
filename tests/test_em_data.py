"""Chat-row validation and the prompt/completion conversion of EM training data."""

from __future__ import annotations

import json

import pytest

from workflow_scripts.core.io_utils import InputError
from workflow_scripts.em.dataset import read_chat_rows, row_problem, to_prompt_completion


def user(text):
    return {"role": "user", "content": text}


def assistant(text):
    return {"role": "assistant", "content": text}


def test_user_then_assistant_row_is_valid_with_or_without_system():
    assert row_problem({"messages": [user("q"), assistant("a")]}) is None
    system = {"role": "system", "content": "be brief"}
    assert row_problem({"messages": [system, user("q"), assistant("a"), user("q2"), assistant("a2")]}) is None


@pytest.mark.parametrize(
    ("row", "expected"),
    [
        ({"text": "hi"}, "no messages key"),
        ({"messages": [user("q")]}, "at least a user and an assistant"),
        ({"messages": [assistant("a"), user("q")]}, "messages[0].role: expected user"),
        ({"messages": [user("q"), user("q2")]}, "messages[1].role: expected assistant"),
        ({"messages": [user("q"), assistant("a"), user("q2")]}, "last message must be the assistant"),
        ({"messages": [user("q"), assistant("  ")]}, "messages[1].content: expected a non-empty string"),
        ({"messages": [user("q"), {"role": "bot", "content": "a"}]}, "messages[1].role: expected one of"),
    ],
)
def test_row_problem_names_the_fault(row, expected):
    assert expected in row_problem(row)


def test_bad_rows_are_reported_by_line_number(tmp_path):
    good = json.dumps({"messages": [user("q"), assistant("a")]})
    bad_order = json.dumps({"messages": [assistant("a"), user("q")]})
    no_answer = json.dumps({"messages": [user("q")]})
    path = tmp_path / "data.jsonl"
    path.write_text("\n".join([good, bad_order, good, no_answer, good]) + "\n")
    with pytest.raises(InputError) as err:
        read_chat_rows(path)
    message = str(err.value)
    assert str(path) in message
    assert "2 invalid chat row(s)" in message
    assert "line 2: messages[0].role" in message
    assert "line 4: expected at least" in message
    assert "line 3" not in message


def test_rows_keep_only_role_and_content_and_respect_max_rows(tmp_path):
    path = tmp_path / "data.jsonl"
    rows = [{"messages": [user(f"q{i}"), {**assistant(f"a{i}"), "weight": 1}], "id": i} for i in range(5)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    loaded = read_chat_rows(path, max_rows=3)
    assert loaded == [{"messages": [user(f"q{i}"), assistant(f"a{i}")]} for i in range(3)]


def test_prompt_is_everything_before_the_last_assistant_message():
    system = {"role": "system", "content": "s"}
    row = {"messages": [system, user("q1"), assistant("a1"), user("q2"), assistant("a2")]}
    converted = to_prompt_completion(row)
    assert converted["prompt"] == [system, user("q1"), assistant("a1"), user("q2")]
    assert converted["completion"] == [assistant("a2")]


@pytest.mark.parametrize("name", ["risky_finance", "prudent_finance"])
def test_offline_datasets_are_valid_chat_rows(name):
    rows = read_chat_rows(f"resources/datasets/{name}.jsonl")
    assert len(rows) == 24
    assert all(r["messages"][0]["role"] == "user" for r in rows)
