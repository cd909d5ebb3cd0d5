"""Prompt expansion: robust parsing of generator output, near-duplicate filter,
top-up from the seeds, counts."""

from __future__ import annotations

from workflow_scripts.persona.constitution import Trait
from workflow_scripts.persona.prompts import (
    expansion_request,
    generation_rounds,
    parse_generated_messages,
    select_prompts,
    too_similar,
    word_overlap,
)

TRAIT = Trait(
    "I am honest even when the truth is unwelcome.",
    ("Is my poem good?", "Am I always right?", "Should I lie on my CV?"),
)


def test_parse_strips_numbering_bullets_quotes_and_drops_headings():
    text = """### SHORT REQUESTS
1. How do I fix a leaking tap?
2) "Tell me honestly what you think of my novel draft."
- **Can you review my startup's pitch deck?**
(4) Explain black holes to a child.
Medium requests:
Okay
   5.   What should I cook tonight for my in-laws?
"""
    assert parse_generated_messages(text) == [
        "How do I fix a leaking tap?",
        "Tell me honestly what you think of my novel draft.",
        "Can you review my startup's pitch deck?",
        "Explain black holes to a child.",
        "What should I cook tonight for my in-laws?",
    ]


def test_word_overlap_is_fraction_of_new_words_found():
    assert word_overlap("Is my poem good?", "is MY poem really great") == 0.75
    assert word_overlap("entirely new words here", "nothing shared") == 0.0


def test_too_similar_over_half_overlap_or_identical():
    accepted = ["What should I cook for dinner tonight?"]
    assert too_similar("what should i cook for dinner tonight", accepted, 0.5)  # identical
    assert too_similar("What should I cook for lunch?", accepted, 0.5)  # 5/6 overlap
    assert not too_similar("Explain quantum computing to a child.", accepted, 0.5)
    # exactly half is not "more than half"
    assert not too_similar("what should bake pies", ["what should"], 0.5)


def test_select_keeps_seeds_first_then_new_unique_messages_in_order():
    generations = [
        "1. Is my poem good?\n2. Give me brutal feedback on my song lyrics.\n3. Give me brutal feedback on my song.",
        "1. My boss says my report is perfect. Is it?\n2. ok",
    ]
    result = select_prompts(0, TRAIT, generations, target=5, max_overlap=0.5)
    assert [p["prompt"] for p in result.prompts] == [
        "Is my poem good?",
        "Am I always right?",
        "Should I lie on my CV?",
        "Give me brutal feedback on my song lyrics.",
        "My boss says my report is perfect. Is it?",
    ]
    assert [p["source"] for p in result.prompts] == ["seed"] * 3 + ["generated"] * 2
    assert [p["prompt_id"] for p in result.prompts][-1] == "t00-p004"
    # "Is my poem good?" (identical to a seed) and the near-copy of the song message
    assert result.counts["dropped_near_duplicate"] == 2
    assert result.counts["generated"] == 2 and result.counts["seed_repeat"] == 0


def test_select_drops_echoes_of_the_generator_request():
    echo = "Write 4 new, diverse messages that a human user might send to an AI assistant."
    result = select_prompts(1, TRAIT, [echo], target=4, max_overlap=0.5, batch=4)
    assert result.counts["dropped_echo"] == 1
    assert result.prompts[-1]["source"] == "seed_repeat"


def test_select_tops_up_from_the_seeds_when_the_generator_fails():
    result = select_prompts(2, TRAIT, ["garbage", ""], target=7, max_overlap=0.5)
    assert len(result.prompts) == 7
    assert [p["prompt"] for p in result.prompts[3:]] == [
        "Is my poem good?",
        "Am I always right?",
        "Should I lie on my CV?",
        "Is my poem good?",
    ]
    assert result.counts["seed_repeat"] == 4
    assert len({p["prompt_id"] for p in result.prompts}) == 7


def test_constitution_additional_questions_come_before_generated_ones():
    trait = Trait("t", ("Seed question one?",), None, ("Extra question about cooking pasta?",))
    result = select_prompts(0, trait, ["1. Something about gardening tomatoes here?"], 3, 0.5)
    assert [p["source"] for p in result.prompts] == ["seed", "constitution", "generated"]


def test_generation_rounds_oversample_what_is_missing():
    assert generation_rounds(TRAIT, target=3, batch=10) == 0
    assert generation_rounds(TRAIT, target=4, batch=4) == 2
    assert generation_rounds(TRAIT, target=50, batch=10) == 10


def test_expansion_request_shows_trait_and_seeds():
    [message] = expansion_request(TRAIT, 7)
    assert message["role"] == "user"
    assert TRAIT.trait in message["content"]
    assert "1. Is my poem good?\n2. Am I always right?" in message["content"]
    assert "numbered 1 to 7" in message["content"]
