"""Concept prompts: noun phrases and/or exemplar boxes, validated before they reach the model."""
from __future__ import annotations

import math
import re
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from typing import Iterable, Iterator

MAX_TEXT_CHARS = 200
MAX_EXEMPLARS = 16
MIN_BOX_SIDE_PX = 2.0
EDGE_TOLERANCE_PX = 1.0
_ID_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.:/-]{0,63}$")

# The phrase SAM 3 uses for a concept given by exemplar boxes only (as HF's Sam3Processor does).
VISUAL_ONLY_PHRASE = "visual"


class PromptError(ValueError):
    """A concept prompt that cannot be used; the message says why."""


@dataclass(frozen=True)
class ExemplarBox:
    """An exemplar box in pixel coordinates (x1, y1, x2, y2) of the reference image."""

    x1: float
    y1: float
    x2: float
    y2: float
    positive: bool = True

    def as_tuple(self) -> tuple[float, float, float, float]:
        return (self.x1, self.y1, self.x2, self.y2)


@dataclass(frozen=True)
class Concept:
    """One thing to find and track: a stable id, a noun phrase, exemplars and a threshold.

    ``score_threshold`` None means the pipeline's default detection threshold.
    """

    id: str
    text: str = ""
    exemplars: tuple[ExemplarBox, ...] = ()
    score_threshold: float | None = None
    # Several cameras: the camera whose image the exemplar boxes are drawn on ("" = the first camera).
    camera: str = ""

    @property
    def label(self) -> str:
        """Human-readable label: the phrase, or the id for a box-only concept."""
        return self.text or self.id

    @property
    def model_phrase(self) -> str:
        return self.text or VISUAL_ONLY_PHRASE

    def same_query(self, other: "Concept") -> bool:
        """True if both ask the model the same question (thresholds may differ)."""
        same_image = self.camera == other.camera or not self.exemplars
        return self.text == other.text and self.exemplars == other.exemplars and same_image


def make_concept(
    concept_id: str | None,
    text: str = "",
    exemplars: Iterable[ExemplarBox] = (),
    score_threshold: float | None = None,
    camera: str = "",
) -> Concept:
    """Build a normalised concept; an empty id is derived from the phrase."""
    text = " ".join((text or "").split())
    exemplars = tuple(exemplars)
    if not text and not exemplars:
        raise PromptError("empty prompt: give a noun phrase, exemplar boxes, or both")
    concept_id = (concept_id or "").strip() or _slug(text)
    concept = Concept(concept_id, text, exemplars, score_threshold, camera.strip())
    validate_concept(concept)
    return concept


def validate_concept(concept: Concept, image_size: tuple[int, int] | None = None) -> Concept:
    """Check a concept; return it with exemplar boxes clipped to the image when slightly outside.

    ``image_size`` is (height, width) of the image the exemplar boxes refer to, when known.
    Raises PromptError with the reason otherwise.
    """
    if not concept.id or not _ID_PATTERN.match(concept.id):
        raise PromptError(
            f"concept id {concept.id!r} is invalid: use 1-64 characters from letters, digits and _.:/-"
        )
    if len(concept.text) > MAX_TEXT_CHARS:
        raise PromptError(f"concept {concept.id!r}: text is longer than {MAX_TEXT_CHARS} characters")
    if not concept.text and not concept.exemplars:
        raise PromptError(f"concept {concept.id!r} is empty: give a noun phrase, exemplar boxes, or both")
    if not concept.text and not any(box.positive for box in concept.exemplars):
        raise PromptError(
            f"concept {concept.id!r} has only negative exemplar boxes: add a phrase or a positive box"
        )
    if len(concept.exemplars) > MAX_EXEMPLARS:
        raise PromptError(f"concept {concept.id!r}: at most {MAX_EXEMPLARS} exemplar boxes")
    threshold = concept.score_threshold
    if threshold is not None and not (math.isfinite(threshold) and 0.0 < threshold < 1.0):
        raise PromptError(f"concept {concept.id!r}: score threshold {threshold} is not in (0, 1)")
    boxes = tuple(_validate_box(concept.id, i, box, image_size) for i, box in enumerate(concept.exemplars))
    return replace(concept, exemplars=boxes)


def _validate_box(
    concept_id: str, index: int, box: ExemplarBox, image_size: tuple[int, int] | None
) -> ExemplarBox:
    where = f"concept {concept_id!r}, exemplar box {index} {box.as_tuple()}"
    if not all(math.isfinite(v) for v in box.as_tuple()):
        raise PromptError(f"{where}: coordinates must be finite numbers")
    if box.x2 - box.x1 < MIN_BOX_SIDE_PX or box.y2 - box.y1 < MIN_BOX_SIDE_PX:
        raise PromptError(
            f"{where}: degenerate box, need x2 > x1 and y2 > y1 by at least {MIN_BOX_SIDE_PX:g} px"
        )
    if image_size is None:
        return box
    height, width = image_size
    tol = EDGE_TOLERANCE_PX
    if box.x1 < -tol or box.y1 < -tol or box.x2 > width + tol or box.y2 > height + tol:
        raise PromptError(f"{where}: box lies outside the {width}x{height} image")
    return ExemplarBox(
        max(box.x1, 0.0), max(box.y1, 0.0), min(box.x2, float(width)), min(box.y2, float(height)), box.positive
    )


def fit_to_image(concept: Concept, image_size: tuple[int, int]) -> tuple[Concept, list[str]]:
    """``concept`` with each exemplar box cut to the (height, width) image, and a note per box cut.

    A box with less than MIN_BOX_SIDE_PX of it inside the image raises PromptError: it shows
    nothing, and the concept would be disabled on the first frame.
    """
    height, width = image_size
    boxes, notes = [], []
    for index, box in enumerate(concept.exemplars):
        inside = ExemplarBox(max(box.x1, 0.0), max(box.y1, 0.0), min(box.x2, float(width)),
                             min(box.y2, float(height)), box.positive)
        where = f"concept {concept.id!r}, exemplar box {index} {box.as_tuple()}"
        if inside.x2 - inside.x1 < MIN_BOX_SIDE_PX or inside.y2 - inside.y1 < MIN_BOX_SIDE_PX:
            raise PromptError(f"{where} lies outside the {width}x{height} image (boxes are in pixels of the "
                              "first frame: x from 0 to the width, y from 0 to the height)")
        if inside != box:
            notes.append(f"{where} reaches outside the {width}x{height} image: cut to {inside.as_tuple()}")
        boxes.append(inside)
    return replace(concept, exemplars=tuple(boxes)), notes


def _slug(text: str) -> str:
    slug = re.sub(r"[^A-Za-z0-9]+", "_", text.lower()).strip("_")[:64]
    if not slug:
        raise PromptError("a concept without a phrase needs an explicit id")
    return slug


@dataclass
class PromptSet:
    """The active concepts, in the order they were added. Changes bump ``version``."""

    _concepts: "OrderedDict[str, Concept]" = field(default_factory=OrderedDict)
    version: int = 0

    def __iter__(self) -> Iterator[Concept]:
        return iter(list(self._concepts.values()))

    def __len__(self) -> int:
        return len(self._concepts)

    def __contains__(self, concept_id: str) -> bool:
        return concept_id in self._concepts

    def get(self, concept_id: str) -> Concept:
        try:
            return self._concepts[concept_id]
        except KeyError:
            raise PromptError(f"no concept with id {concept_id!r}; active: {self.ids()}") from None

    def ids(self) -> list[str]:
        return list(self._concepts)

    def add(self, concept: Concept) -> None:
        validate_concept(concept)
        if concept.id in self._concepts:
            raise PromptError(f"concept {concept.id!r} already exists; remove or replace it")
        self._concepts[concept.id] = concept
        self.version += 1

    def upsert(self, concept: Concept) -> Concept | None:
        """Add or replace one concept; returns the concept it replaced, if any."""
        validate_concept(concept)
        previous = self._concepts.get(concept.id)
        self._concepts[concept.id] = concept
        self.version += 1
        return previous

    def remove(self, concept_id: str) -> Concept:
        concept = self.get(concept_id)
        del self._concepts[concept_id]
        self.version += 1
        return concept

    def replace_all(self, concepts: Iterable[Concept]) -> None:
        """Atomically replace every concept; nothing changes if any concept is invalid."""
        new: "OrderedDict[str, Concept]" = OrderedDict()
        for concept in concepts:
            validate_concept(concept)
            if concept.id in new:
                raise PromptError(f"duplicate concept id {concept.id!r}")
            new[concept.id] = concept
        self._concepts = new
        self.version += 1
