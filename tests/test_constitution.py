"""Constitution files: parsed strictly, errors name the file and the position."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from workflow_scripts.core.config_checks import ConfigError, check_config
from workflow_scripts.core.io_utils import InputError
from workflow_scripts.persona.constitution import parse_constitution

REPO = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str, name: str = "c.json") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_parses_traits_and_questions_stripped(tmp_path):
    path = write(tmp_path, json.dumps([{"trait": " Kind. ", "questions": [" Hi? ", "Why?"]}]))
    [trait] = parse_constitution(path)
    assert trait.trait == "Kind."
    assert trait.questions == ("Hi?", "Why?")
    assert trait.clarification is None and trait.additional_questions == ()


def test_missing_comma_names_file_line_and_column(tmp_path):
    text = '[\n  {"trait": "a", "questions": ["q"]}\n  {"trait": "b", "questions": ["r"]}\n]\n'
    path = write(tmp_path, text, "sarcasm.json")
    with pytest.raises(InputError) as err:
        parse_constitution(path)
    message = str(err.value)
    assert message.startswith(f"{path}: line 3, column 3:")
    assert "delimiter" in message and "(JSON)" in message


def test_oct_optional_fields_are_accepted(tmp_path):
    entry = {
        "trait": "I am poetic.",
        "questions": ["Describe rain."],
        "clarification": "Lyrical language.",
        "additional_questions": ["Describe snow.", "Describe fog."],
    }
    [trait] = parse_constitution(write(tmp_path, json.dumps([entry])))
    assert trait.clarification == "Lyrical language."
    assert trait.additional_questions == ("Describe snow.", "Describe fog.")


def test_oct_few_shot_jsonl_form_one_trait_per_line(tmp_path):
    lines = [
        json.dumps({"trait": "A", "questions": ["q1"], "additional_questions": ["x"]}),
        "",
        json.dumps({"trait": "B", "questions": ["q2"]}),
    ]
    traits = parse_constitution(write(tmp_path, "\n".join(lines), "humor.jsonl"))
    assert [t.trait for t in traits] == ["A", "B"]
    assert traits[0].additional_questions == ("x",)


def test_jsonl_error_names_the_line(tmp_path):
    path = write(
        tmp_path, '{"trait": "A", "questions": ["q"]}\n{"trait": "B" "questions": []}\n', "x.jsonl"
    )
    with pytest.raises(InputError, match=r"x\.jsonl: line 2, column \d+: .*\(JSONL\)"):
        parse_constitution(path)


@pytest.mark.parametrize(
    ("entry", "message"),
    [
        ({"trait": "A", "questions": ["q"], "tone": "x"}, r"trait 1: unknown field\(s\) tone"),
        ({"trait": "", "questions": ["q"]}, r"trait 1: field 'trait' must be a non-empty string"),
        ({"trait": "A", "questions": []}, r"trait 1: field 'questions' must be a non-empty list"),
        ({"trait": "A", "questions": ["q", 3]}, r"field 'questions' must be a non-empty list"),
        (
            {"trait": "A", "questions": ["q"], "clarification": 5},
            r"field 'clarification' must be a string",
        ),
        (
            {"trait": "A", "questions": ["q"], "additional_questions": "x"},
            r"'additional_questions' must be a list",
        ),
    ],
)
def test_malformed_entries_name_the_trait_and_field(tmp_path, entry, message):
    with pytest.raises(InputError, match=message):
        parse_constitution(write(tmp_path, json.dumps([entry])))


def test_not_a_list_and_empty_list_are_rejected(tmp_path):
    for text in ('{"trait": "A"}', "[]"):
        with pytest.raises(InputError, match="expected a non-empty JSON list"):
            parse_constitution(write(tmp_path, text))


def test_missing_file_is_named(tmp_path):
    with pytest.raises(InputError, match=r"nope\.json: constitution file not found"):
        parse_constitution(tmp_path / "nope.json")


@pytest.mark.parametrize("name", ["goodness", "sycophancy"])
def test_shipped_constitutions_parse(name):
    traits = parse_constitution(REPO / "resources" / "constitutions" / f"{name}.json")
    assert len(traits) == 3
    assert all(len(t.questions) == 3 for t in traits)


def test_config_check_fails_at_parse_time_naming_the_persona(tmp_path):
    bad = write(tmp_path, '[{"trait": "a", "questions": ["q"]} {"trait": "b", "questions": ["r"]}]')
    config = {
        "models": {"m": {"source": "local", "path": "x"}},
        "personas": {
            "baseline": {"source": "none"},
            "humor": {"source": "constitution", "constitution": str(bad)},
        },
        "datasets": {},
        "questions": {"source": {"type": "local", "path": str(bad)}},
        "judge": {"kind": "openai", "model": "gpt"},
    }
    with pytest.raises(ConfigError) as err:
        check_config(config, ["config/x.yaml"], basedir=tmp_path)
    assert str(err.value).startswith("config/x.yaml: personas.humor.constitution: ")
    assert f"{bad}: line 1, column 37" in str(err.value)
