"""Concept prompts: validation with reasons, atomic replacement, stable ids."""
import math

import pytest

from sam3_ros.core.prompts import ExemplarBox, PromptError, PromptSet, make_concept, validate_concept


def test_id_is_derived_from_phrase_and_whitespace_normalised():
    concept = make_concept("", "  Yellow   Forklift ")
    assert concept.id == "yellow_forklift"
    assert concept.text == "Yellow Forklift"
    assert concept.label == "Yellow Forklift"


@pytest.mark.parametrize("kwargs, reason", [
    (dict(concept_id="x"), "empty"),
    (dict(concept_id="x", exemplars=[ExemplarBox(0, 0, 10, 10, positive=False)]), "only negative"),
    (dict(concept_id="x", text="cup", exemplars=[ExemplarBox(5, 5, 5.5, 20)]), "degenerate"),
    (dict(concept_id="x", text="cup", exemplars=[ExemplarBox(20, 5, 10, 20)]), "degenerate"),
    (dict(concept_id="x", text="cup", exemplars=[ExemplarBox(0, math.nan, 10, 20)]), "finite"),
    (dict(concept_id="x", text="cup", score_threshold=1.5), "threshold"),
    (dict(concept_id="bad id!", text="cup"), "invalid"),
    (dict(concept_id="x", text="c" * 500), "longer"),
])
def test_invalid_prompts_are_rejected_with_a_reason(kwargs, reason):
    with pytest.raises(PromptError, match=reason):
        make_concept(**kwargs)


def test_boxes_are_checked_against_the_image_and_clipped_within_tolerance():
    concept = make_concept("cup", "cup", [ExemplarBox(-0.5, 2, 100.8, 50)])
    clipped = validate_concept(concept, image_size=(60, 100))
    assert clipped.exemplars[0].as_tuple() == (0.0, 2, 100.0, 50)
    with pytest.raises(PromptError, match="outside"):
        validate_concept(make_concept("cup", "cup", [ExemplarBox(10, 10, 150, 50)]), image_size=(60, 100))


def test_box_only_concept_needs_an_id_and_uses_the_visual_phrase():
    with pytest.raises(PromptError, match="explicit id"):
        make_concept("", "", [ExemplarBox(0, 0, 10, 10)])
    concept = make_concept("widget", "", [ExemplarBox(0, 0, 10, 10)])
    assert concept.model_phrase == "visual"
    assert concept.label == "widget"


def test_prompt_set_add_remove_and_atomic_replace():
    prompts = PromptSet()
    prompts.add(make_concept(None, "cup"))
    with pytest.raises(PromptError, match="already exists"):
        prompts.add(make_concept(None, "cup"))
    version = prompts.version
    good, bad = make_concept(None, "box"), make_concept(None, "crate")
    with pytest.raises(PromptError, match="duplicate"):
        prompts.replace_all([good, bad, good])
    assert prompts.ids() == ["cup"] and prompts.version == version
    prompts.replace_all([good, bad])
    assert prompts.ids() == ["box", "crate"]
    with pytest.raises(PromptError, match="no concept"):
        prompts.remove("cup")
    assert prompts.remove("box").text == "box"
    assert prompts.ids() == ["crate"]


def test_same_query_ignores_threshold():
    a = make_concept("cup", "cup", score_threshold=0.3)
    b = make_concept("cup", "cup", score_threshold=0.6)
    assert a.same_query(b) and not a.same_query(make_concept("cup", "mug"))
