"""The hand of a case in words, the same in every front end (no Qt): the side, where it came from,
how sure, and, when nothing decides it, why and what to do.

``decision_words`` gives "left (found in the image, confidence 0.997)", "right (from the file's
header)" or "left (you chose)"; ``ask_words`` gives "choose the hand: the image cannot tell (a crop
of MC2 and MC3)" for an undecided :class:`~napari_vbmd.segmentation.hand.HandDecision`.
"""
from __future__ import annotations

import re

#: where the hand a scan was treated as came from, in words
SOURCE_WORDS = {"argument": "you chose", "manifest": "from the manifest", "header": "from the file's header",
                "image": "found in the image"}


def source_words(source: str | None, confidence: float | None = None) -> str:
    """'you chose', 'from the file's header', 'found in the image, confidence 0.997'."""
    words = SOURCE_WORDS.get(source, source or "from nowhere")
    if source == "image" and confidence is not None:
        words += f", confidence {confidence:.3f}"
    return words


def decision_words(decision) -> str:
    """A decided hand and its source in a few words; 'undecided' otherwise."""
    if decision is None or not decision.decided:
        return "undecided"
    return f"{decision.hand} ({source_words(decision.source, decision.confidence)})"


def why_undecided(decision) -> str:
    """Why the image does not decide the hand, in a few words (the full reason is ``decision.reason``)."""
    reason = decision.reason or ""
    if "cropped to MC2 and MC3" in reason:
        return "the image cannot tell (a crop of MC2 and MC3)"
    lean = re.match(r"the image leans (left|right)", reason)
    if lean:
        sure = f", confidence {decision.confidence:.2f}" if decision.confidence is not None else ""
        return f"the image is not sure enough (it leans {lean.group(1)}{sure})"
    if reason.startswith("the image could not be read as densities"):
        return "the image cannot tell (it could not be read as densities)"
    if reason.startswith("no bone in the field of view"):
        return "the image cannot tell (no bone to tell it from)"
    if reason.startswith("no row of four metacarpal heads"):
        return "the image cannot tell (no row of four metacarpal heads)"
    if "does not establish every direction" in reason or "contradicts" in reason:
        return "the image cannot tell (its cues are too weak or disagree)"
    return "the image cannot tell"


def ask_words(decision) -> str:
    """What the user must do when nothing decides the hand, and why."""
    return f"choose the hand: {why_undecided(decision)}"


def hand_evidence(decision) -> str:
    """The evidence worth showing beside the hand: the image's cues, or a header the user overruled."""
    if decision is None or not decision.decided:
        return ""
    if decision.source == "image" or "the header says" in (decision.reason or ""):
        return decision.reason
    return ""
