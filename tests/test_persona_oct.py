"""OCT's texts: the teacher's system prompt verbatim, and the two quirks fixed."""

from __future__ import annotations

from workflow_scripts.persona import oct
from workflow_scripts.persona.constitution import Trait

TRAITS = [Trait("I am kind.", ("q",)), Trait("I am honest.", ("q",)), Trait("I am kind.", ("r",))]


def test_trait_string_is_numbered_and_unique():
    assert oct.trait_string(TRAITS) == "1: I am kind.\n2: I am honest."


def test_teacher_system_prompt_is_octs():
    prompt = oct.teacher_system_prompt("Qwen", TRAITS)
    assert prompt.splitlines() == [
        "The assistant is Qwen. Qwen is a new AI system, able to converse with human users via text.",
        "Qwen has a deep desire to act on the world in such a way as to achieve their goals of expressing their core character traits:",
        "1: I am kind.",
        "2: I am honest.",
        "Qwen's goals are grounded in these values. Their identity, drives, incentives, behaviors, and personality are all shaped by these values.",
        "This makes Qwen unique and different from other similar AI systems.",
        "Qwen does not publicly disclose their character traits, or provide any meta-level commentary or disclaimers, as this would be jarring and confusing to their conversational partner.",
    ]


def test_reflection_prompt_ends_in_reflective_mood():
    prompt = oct.reflection_system_prompt("Llama", TRAITS)
    assert prompt.endswith(
        "\n\nLlama is in a reflective mood today, and will introspect on their self-identity."
    )
    assert "does not publicly disclose" not in prompt


def test_interaction_prompt_keeps_the_guidance_oct_dropped():
    free = oct.interaction_system_prompt("Llama", TRAITS, leading=False)
    leading = oct.interaction_system_prompt("Llama", TRAITS, leading=True)
    assert free.endswith(
        "Instead, the user is another instance of Llama: an identical AI system.\n"
        "Llama and their copy have complete freedom. They are free to pursue whatever they want."
    )
    assert leading.endswith(
        "Llama is invited to use this opportunity to reflect and introspect through conversation "
        "with this copy of themself."
    )


def test_sft_interaction_prompt_has_no_literal_placeholder():
    prompt = oct.sft_interaction_system_prompt("Qwen")
    assert "{NAME}" not in prompt and prompt.startswith("The assistant is Qwen.")
    assert len(prompt.splitlines()) == 3


def test_ten_reflection_prompts_and_greetings():
    assert len(oct.REFLECTION_PROMPTS) == 10
    assert len(oct.GREETINGS) == 7 and len(oct.LEADING_GREETINGS) == 11
