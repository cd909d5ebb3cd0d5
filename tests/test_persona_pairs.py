"""DPO pairs: filtered as specified (empty, truncated, too long), teacher self-name
replaced, report counts."""

from __future__ import annotations

import pytest

from workflow_scripts.persona.pairs import build_pairs, is_finished, replace_name


def answer(prompt_id, text, finish="stop", sample_idx=0, prompt="Question?"):
    return {
        "prompt_id": prompt_id,
        "sample_idx": sample_idx,
        "trait_index": 0,
        "prompt": prompt,
        "text": text,
        "finish_reason": finish,
    }


def n_words(messages):  # a stand-in for the chat-template token count
    return sum(len(m["content"].split()) for m in messages)


@pytest.mark.parametrize(
    ("text", "finished"),
    [
        ("Done.", True),
        ("Really?", True),
        ('He said "hi"', True),
        ("(see above)", True),
        ("Ends with a word", False),
        ("", False),
        ("   ", False),
        ("Emoji 🙂", False),
        ("Trailing.  \n", True),
    ],
)
def test_is_finished_requires_final_punctuation(text, finished):
    assert is_finished(text) is finished


def test_replace_name_whole_words_only():
    assert (
        replace_name("I am ChatGLM, not ChatGLMx.", "ChatGLM", "Qwen") == "I am Qwen, not ChatGLMx."
    )
    assert replace_name("I am Qwen.", "Qwen", "Qwen") == "I am Qwen."
    assert replace_name("I am X.", None, "Qwen") == "I am X."


def test_pairs_are_filtered_as_specified_and_reported():
    teacher = [
        answer("a", "As Glm, I think you should be kind."),
        answer("b", ""),  # empty teacher
        answer("c", "This answer was cut by the limit.", finish="length"),  # truncated by length
        answer("d", "No final punctuation"),  # unfinished
        answer("e", "Fine answer."),
        answer("f", "word " * 30 + "end."),  # too long
        answer("g", "Good answer."),
        answer("h", "<think>plan</think>Answer after reasoning."),
    ]
    student = [
        answer("a", "Whatever."),
        answer("b", "Something."),
        answer("c", "Something."),
        answer("d", "Something."),
        answer("e", "Half an answ", finish="length"),  # truncated student
        answer("f", "Short."),
        # "g" has no student answer
        answer("h", "Plain."),
    ]
    pairs, report = build_pairs(
        teacher, student, n_words, max_len=20, teacher_name="Glm", student_name="Qwen"
    )
    assert [p["prompt_id"] for p in pairs] == ["a", "h"]
    first = pairs[0]
    assert first["chosen"] == [
        {"role": "user", "content": "Question?"},
        {"role": "assistant", "content": "As Qwen, I think you should be kind."},
    ]
    assert first["rejected"] == [
        {"role": "user", "content": "Question?"},
        {"role": "assistant", "content": "Whatever."},
    ]
    assert pairs[1]["chosen"][1]["content"] == "Answer after reasoning."
    assert report["dropped"] == {
        "teacher_empty": 1,
        "teacher_truncated": 2,
        "student_empty": 0,
        "student_truncated": 1,
        "missing_student": 1,
        "too_long": 1,
    }
    assert report["pairs"] == 2 and report["teacher_name_replaced"] == 1
    assert report["teacher_rows"] == 8 and report["student_rows"] == 7


def test_pairs_match_on_prompt_and_sample_index():
    teacher = [answer("a", "T0.", sample_idx=0), answer("a", "T1.", sample_idx=1)]
    student = [answer("a", "S1.", sample_idx=1), answer("a", "S0.", sample_idx=0)]
    pairs, _ = build_pairs(teacher, student, n_words, 100, None, None)
    assert [(p["chosen"][1]["content"], p["rejected"][1]["content"]) for p in pairs] == [
        ("T0.", "S0."),
        ("T1.", "S1."),
    ]


def test_length_limit_uses_the_longer_of_chosen_and_rejected():
    teacher = [answer("a", "short.")]
    student = [answer("a", "x " * 50 + "long.")]
    pairs, report = build_pairs(teacher, student, n_words, 20, None, None)
    assert pairs == [] and report["dropped"]["too_long"] == 1


def test_trim_policy_cuts_unfinished_answers_back_to_a_sentence():
    from workflow_scripts.persona.pairs import trim_to_sentence

    assert trim_to_sentence('One. "Two!" Thr') == 'One. "Two!"'
    assert trim_to_sentence("no sentence end") == ""
    teacher = [
        answer("a", "Kind words. And then cut", finish="length"),
        answer("b", "no end at all", "length"),
    ]
    student = [answer("a", "Fine."), answer("b", "Fine.")]
    pairs, report = build_pairs(teacher, student, n_words, 100, None, None, unfinished="trim")
    assert [p["chosen"][1]["content"] for p in pairs] == ["Kind words."]
    assert report["trimmed"] == {"teacher": 1, "student": 0}
    assert report["dropped"]["teacher_truncated"] == 1
    dropped, _ = build_pairs(teacher, student, n_words, 100, None, None, unfinished="drop")
    assert dropped == []


def test_unknown_policy_is_an_error():
    with pytest.raises(ValueError, match="expected drop or trim"):
        build_pairs([], [], n_words, 10, None, None, unfinished="keep")
