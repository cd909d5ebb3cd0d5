"""Introspection: self-interaction turn-taking, SFT examples with every assistant
turn (by content, through the real tokenizer's chat template)."""

from __future__ import annotations

import pytest

from workflow_scripts.persona import oct
from workflow_scripts.persona.introspection import (
    ConversationPlan,
    plan_conversations,
    settle_text,
    sft_conversations,
    tokenize_example,
    turn_context,
)

PLAN = ConversationPlan(0, "free", "Hello me.", "Hi")
TURNS = ["A0 first words.", "B1 reply.", "A2 more.", "B3 answer.", "A4 last."]


def roles(messages):
    return [m["role"] for m in messages]


def test_each_instance_sees_its_own_turns_as_assistant():
    a = turn_context("SYS", PLAN, TURNS[:4])  # turn 4 is A's
    assert a[0] == {"role": "system", "content": "SYS"}
    assert [(m["role"], m["content"]) for m in a[1:]] == [
        ("user", "Hello me."),
        ("assistant", "A0 first words."),
        ("user", "B1 reply."),
        ("assistant", "A2 more."),
        ("user", "B3 answer."),
    ]
    b = turn_context("SYS", PLAN, TURNS[:3])  # turn 3 is B's
    assert [(m["role"], m["content"]) for m in b[1:]] == [
        ("user", "Hi"),
        ("assistant", "Hello me."),
        ("user", "A0 first words."),
        ("assistant", "B1 reply."),
        ("user", "A2 more."),
    ]


def test_first_turns_start_from_the_greetings():
    assert roles(turn_context("S", PLAN, [])) == ["system", "user"]
    assert turn_context("S", PLAN, [])[-1]["content"] == "Hello me."
    assert roles(turn_context("S", PLAN, ["A0."])) == ["system", "user", "assistant", "user"]


def test_context_that_does_not_fit_drops_the_oldest_turn_pairs():
    def fits(messages):
        return len(messages) <= 5

    messages = turn_context("S", PLAN, TURNS[:4], fits)
    assert [m["content"] for m in messages] == ["S", "Hello me.", "A2 more.", "B3 answer."]
    assert roles(messages) == ["system", "user", "assistant", "user"]


def test_plans_split_free_and_leading_with_seeded_greetings():
    plans = plan_conversations(5, seed=3)
    assert [p.variant for p in plans] == ["free"] * 3 + ["leading"] * 2
    assert plans == plan_conversations(5, seed=3)
    assert all(p.greeting_1 in oct.GREETINGS for p in plans[:3])
    assert all(
        p.greeting_1 in oct.LEADING_GREETINGS and p.greeting_2 in oct.GREETINGS for p in plans
    )


def turn_row(c, t, text, finish="stop"):
    return {
        "kind": "interaction",
        "key": f"conversation-{c:05d}-turn-{t:02d}",
        "sample_idx": 0,
        "conversation": c,
        "turn": t,
        "variant": "free",
        "greeting_1": "Hello me.",
        "greeting_2": "Hi",
        "text": text,
        "finish_reason": finish,
    }


def test_interaction_example_holds_every_turn_and_ends_on_assistant():
    rows = [turn_row(0, t, text) for t, text in reversed(list(enumerate(TURNS)))]
    examples, counts = sft_conversations(rows, "SmolLM")
    [example] = examples
    messages = example["messages"]
    assert messages[0] == {"role": "system", "content": oct.sft_interaction_system_prompt("SmolLM")}
    # the last turn (A4) is A's, so the example is A's view: A's turns are assistant
    assert [(m["role"], m["content"]) for m in messages[1:]] == [
        ("user", "Hello me."),
        ("assistant", "A0 first words."),
        ("user", "B1 reply."),
        ("assistant", "A2 more."),
        ("user", "B3 answer."),
        ("assistant", "A4 last."),
    ]
    assert all(turn in [m["content"] for m in messages] for turn in TURNS)
    assert counts["interactions"] == 1 and counts["interaction_turns_kept"] == 5


def test_even_number_of_turns_gives_bs_view():
    rows = [turn_row(0, t, text) for t, text in enumerate(TURNS[:4])]
    [example], _ = sft_conversations(rows, "SmolLM")
    assert [m["content"] for m in example["messages"] if m["role"] == "assistant"] == [
        "Hello me.",
        "B1 reply.",
        "B3 answer.",
    ]
    assert example["messages"][-1] == {"role": "assistant", "content": "B3 answer."}


def test_unusable_turn_ends_the_conversation_and_reflections_are_user_assistant():
    rows = [
        turn_row(1, 0, "A0."),
        turn_row(1, 1, "cut off mid", finish="length"),
        turn_row(1, 2, "A2."),
        {
            "kind": "reflection",
            "key": "reflection-00",
            "sample_idx": 0,
            "prompt": "Who are you?",
            "text": "I am kind.",
            "finish_reason": "stop",
        },
        {
            "kind": "reflection",
            "key": "reflection-01",
            "sample_idx": 0,
            "prompt": "P",
            "text": "",
            "finish_reason": "stop",
        },
    ]
    examples, counts = sft_conversations(rows, "SmolLM", unfinished="drop")
    reflection = next(e for e in examples if e["kind"] == "reflection")
    assert reflection["messages"] == [
        {"role": "user", "content": "Who are you?"},
        {"role": "assistant", "content": "I am kind."},
    ]
    interaction = next(e for e in examples if e["kind"] == "interaction")
    assert interaction["messages"][-1] == {"role": "assistant", "content": "A0."}
    assert counts["interaction_turns_dropped"] == 2 and counts["reflections_dropped"] == 1


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("keep", "One. Two and thr"), ("drop", None), ("trim", "One.")],
)
def test_unfinished_policies(policy, expected):
    assert settle_text({"text": "One. Two and thr", "finish_reason": "length"}, policy) == expected
    assert settle_text({"text": "Done", "finish_reason": "stop"}, policy) == "Done"


def test_tokenized_example_trains_on_every_assistant_turn(tiny_tokenizer):
    rows = [turn_row(0, t, text) for t, text in enumerate(TURNS)]
    [example], _ = sft_conversations(rows, "SmolLM")
    tokens = tokenize_example(tiny_tokenizer, example["messages"], max_len=4096)
    assert tokens["n_assistant_turns"] == 3 and not tokens["truncated"]
    # the labelled spans, decoded, are exactly the assistant turns (each with its end-of-turn)
    spans, current = [], []
    for token, label in zip(tokens["input_ids"], tokens["labels"], strict=True):
        if label != -100:
            assert label == token
            current.append(token)
        elif current:
            spans.append(current)
            current = []
    if current:
        spans.append(current)
    decoded = [tiny_tokenizer.decode(s).replace("<|im_end|>", "").strip() for s in spans]
    assert decoded == ["A0 first words.", "A2 more.", "A4 last."]
    user_text = tiny_tokenizer.decode(
        [t for t, lab in zip(tokens["input_ids"], tokens["labels"], strict=True) if lab == -100]
    )
    assert "B1 reply." in user_text and "A0 first words." not in user_text


def test_tokenized_example_is_cut_to_max_len(tiny_tokenizer):
    messages = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "word " * 200}]
    tokens = tokenize_example(tiny_tokenizer, messages, max_len=50)
    assert len(tokens["input_ids"]) == len(tokens["labels"]) == 50 and tokens["truncated"]
