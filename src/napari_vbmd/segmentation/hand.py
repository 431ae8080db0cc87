"""Which hand a scan holds: given by the user, a manifest or the header, or found in the image.

The pipeline treats a left hand by mirroring it into a right one, so a wrong side means the mask
of another bone, measured without a warning. The side is therefore never assumed:
:func:`resolve_hand` takes it from the user's argument, a batch manifest, the file's header, or
:func:`detect_hand`, and says where it came from; when none of them decides it the answer is
*undecided* (:class:`HandDecision` with ``hand=None``), and :func:`require_hand` turns that into a
one-line :class:`HandUndecidedError` naming the file and how to give the hand.

Detection (:mod:`.hand_image`) finds the row of metacarpal heads MC2-MC5 in a whole-hand field of
view and derives the side from three anatomical directions (radial to ulnar, dorsal to palmar,
distal to proximal), each from independent cues. A field cropped to MC2 and MC3 does not show
enough for that and is left undecided. Cost: one pass over the scan, averaged to 0.4 mm voxels.
The hand is named in the project's convention (the phantom generator's and the pipeline's): a
right hand has x running radial to ulnar, y dorsal to palmar and z distal to proximal, or any
rotation of that; a left hand is its mirror image (docs/hand.md).

Engine code: no napari, no Qt.
"""
from __future__ import annotations

import itertools
import math
import time
from dataclasses import dataclass, field
from typing import Callable

from ..errors import CancelledError, VbmdError
from ..scan import Scan

HANDS = ("left", "right")
SOURCES = ("argument", "manifest", "header", "image")
#: the image decides only when its confidence reaches this (chosen on the generator's phantoms;
#: docs/hand.md) and each of the three directions is established on its own by cues adding up to
#: MIN_AXIS_MARGIN (units of the cues' typical margins: two clear cues, or one strong one)
DECISION_CONFIDENCE = 0.95
MIN_AXIS_MARGIN = 2.0
AXIS_WORDS = {"u": "radial-ulnar", "v": "dorsal-palmar", "w": "distal-proximal"}

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class HandDecision:
    """The hand a scan is treated as, where that came from and how sure it is."""

    hand: str | None  # "left" | "right" | None (undecided)
    source: str | None  # "argument" | "header" | "manifest" | "image" | None when undecided
    confidence: float | None  # 0..1 (1.0 for argument/header/manifest; the detector's for image)
    reason: str  # one line a person can read: the evidence, or why undecided
    #: what the image showed (cues, row of heads), when it was looked at; not part of the answer
    evidence: object = field(default=None, compare=False, repr=False)

    @property
    def decided(self) -> bool:
        return self.hand is not None

    def to_dict(self) -> dict:
        return {"hand": self.hand, "source": self.source, "confidence": self.confidence, "reason": self.reason}

    def describe(self) -> str:
        """``left (image, confidence 0.99)``, ``right (header)`` or ``undecided``."""
        if not self.decided:
            return "undecided"
        if self.source == "image":
            return f"{self.hand} (image, confidence {self.confidence:.3f})"
        return f"{self.hand} ({self.source})"


class HandUndecidedError(VbmdError):
    """Neither the user, a manifest, the header nor the image says which hand a scan holds."""

    def __init__(self, decision: HandDecision, path=None):
        self.decision = decision
        super().__init__(f"cannot tell which hand this is ({decision.reason}); give it with --hand left|right", path)


class HandConflictError(VbmdError):
    """The hand given (argument, manifest, header) is not the one a whole-hand field shows."""


def _check(hand, what: str) -> str | None:
    if hand is None or hand == "":
        return None
    value = str(hand).strip().lower()
    if value not in HANDS:
        raise VbmdError(f"{what} must be left or right, got {hand!r}")
    return value


def resolve_hand(scan: Scan, requested: str | None = "auto", manifest_hand: str | None = None,
                 progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> HandDecision:
    """The hand to treat ``scan`` as: ``requested`` ("left"/"right"), else the manifest's, else the
    header's, else the image's (:func:`detect_hand`). Never raises when undecided (``hand=None``);
    raises VbmdError for a request that is not auto, left or right."""
    if requested in (None, "", "auto"):
        requested = None
    else:
        requested = _check(requested, "hand")
    manifest_hand = _check(manifest_hand, "the manifest's hand")
    header = scan.hand if scan.hand in HANDS else None
    if requested:
        note = f"; the header says {header}" if header and header != requested else ""
        return HandDecision(requested, "argument", 1.0, f"given as {requested}{note}")
    if manifest_hand:
        note = f"; the header says {header}" if header and header != manifest_hand else ""
        return HandDecision(manifest_hand, "manifest", 1.0, f"the manifest says {manifest_hand}{note}")
    if header:
        return HandDecision(header, "header", 1.0, f"the file's header says {header}")
    return detect_hand(scan, progress=progress, cancel=cancel)


def require_hand(decision: HandDecision, scan: Scan | None = None) -> str:
    """The decided hand, or HandUndecidedError naming the scan's file."""
    if not decision.decided:
        raise HandUndecidedError(decision, scan.source if scan is not None else None)
    return decision.hand


def detect_hand(scan: Scan, progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> HandDecision:
    """The side of the hand from the image alone (see the module docstring); undecided below
    :data:`DECISION_CONFIDENCE` or without a row of metacarpal heads in the field."""
    from .hand_image import analyse, pooled_density

    started = time.perf_counter()
    if scan.kind != "image":
        return HandDecision(None, None, None, "a mask shows no hand")
    if progress:
        progress(0, 2, "looking for the hand's side")
    try:
        density, spacing = pooled_density(scan, cancel=cancel)
    except CancelledError:
        raise
    except VbmdError as exc:  # e.g. no calibration: nothing to look at
        return HandDecision(None, None, None, f"the image could not be read as densities ({exc.problem})")
    evidence = analyse(density, spacing)
    evidence.locate(scan.spacing, spacing)
    evidence.seconds = time.perf_counter() - started
    if progress:
        progress(2, 2, "hand side looked for")
    if evidence.problem:
        return HandDecision(None, None, None, evidence.problem, evidence)
    hand, confidence, reason = decide(evidence)
    if hand is None:
        return HandDecision(None, None, confidence, reason, evidence)
    return HandDecision(hand, "image", confidence, reason, evidence)


def decide(evidence) -> tuple[str | None, float, str]:
    """(hand or None, confidence, reason) from the image's cues: decided when each of the three
    directions is established on its own, the joints' cascade does not contradict them, and the
    confidence reaches :data:`DECISION_CONFIDENCE`."""
    p_right = _probability_right(evidence)
    hand = "right" if p_right >= 0.5 else "left"
    confidence = round(max(p_right, 1.0 - p_right), 4)
    summary = _summary(evidence)
    weak = [f"{AXIS_WORDS[a]} {evidence.axis_sum(a):+.1f}" for a in AXIS_WORDS
            if abs(evidence.axis_sum(a)) < MIN_AXIS_MARGIN]
    if weak:
        return None, confidence, (f"the image does not establish every direction of the hand (weak: {', '.join(weak)};"
                                  f" {MIN_AXIS_MARGIN} needed): {summary}")
    cascade = evidence.axis_sum("uw")
    if abs(cascade) >= 1.0 and (cascade > 0) != (evidence.axis_sum("u") * evidence.axis_sum("w") > 0):
        return None, confidence, f"the joints' cascade contradicts the radial-ulnar and distal-proximal cues: {summary}"
    if confidence < DECISION_CONFIDENCE:
        return None, confidence, (f"the image leans {hand} but not enough (confidence {confidence:.3f} < "
                                  f"{DECISION_CONFIDENCE}): {summary}")
    return hand, confidence, f"whole-hand field: {summary}"


def _probability_right(evidence) -> float:
    """P(the triad has the right hand's orientation), taking each cue's capped margin as log-odds
    for the sign of its direction (u, v, w) or of a product of two (uw), the signs independent."""
    sums = {axis: evidence.axis_sum(axis) for axis in ("u", "v", "w", "uw")}
    weights = {+1: 0.0, -1: 0.0}
    for su, sv, sw in itertools.product((1, -1), repeat=3):
        log = 0.5 * (su * sums["u"] + sv * sums["v"] + sw * sums["w"] + su * sw * sums["uw"])
        weights[su * sv * sw] += math.exp(log)
    return weights[1] / (weights[1] + weights[-1])


def _summary(evidence) -> str:
    """One line: per direction, the cues that point it one way, and those against."""
    words = {"u": "radial-ulnar", "v": "dorsal-palmar", "w": "distal-proximal",
             "uw": "radial-ulnar with distal-proximal"}
    parts = []
    for axis in ("u", "v", "w", "uw"):
        cues = [c for c in evidence.cues if c.axis == axis and c.score != 0]
        if not cues:
            if axis != "uw":
                parts.append(f"{words[axis]}: no cue")
            continue
        total = evidence.axis_sum(axis)
        agree = _names([c.name for c in cues if (c.score > 0) == (total > 0)])
        against = _names([c.name for c in cues if (c.score > 0) != (total > 0)])
        parts.append(f"{words[axis]}: {agree or 'none'}" + (f" (against: {against})" if against else ""))
    return "; ".join(parts)


def _names(names: list) -> str:
    joints = [n for n in names if n.startswith("joint space")]
    others = [n for n in names if not n.startswith("joint space")]
    if len(joints) > 1:
        others.insert(0, f"{len(joints)} joint spaces")
    elif joints:
        others.insert(0, "1 joint space")
    return ", ".join(others)
