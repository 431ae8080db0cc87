"""A rater's session: the case order, what each case shows, and every answer saved at once.

Everything here is computed from ``study.json`` and the rater's name only; the owner's mapping of
contours to sources is never read, so nothing the rating view builds can depend on a source.

Randomisation is reproducible without any random-number library: the order of cases is the
order of SHA-256(study id, rater, case id), and the bits of SHA-256(study id, rater, "show",
case id) decide which contour is "Contour 1", which colour it gets and which is drawn on top.
"""
from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass

import numpy as np

from ..errors import VbmdError
from ..util import timestamp
from .store import AnswerStore, rater_key
from .study import CONTOUR_NAMES, Study, StudyCase, sha256_path

CHOICES = ("contour_1", "contour_2", "equal")
RECORD_SCHEMA = 1


def _digest(*parts: str) -> bytes:
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).digest()


def case_order(study: Study, rater: str) -> list[str]:
    """This rater's order of the study's cases (the same every time, different per rater)."""
    key = rater_key(rater)
    return sorted((c.case_id for c in study.cases), key=lambda cid: _digest(study.study_id, key, "order", cid))


@dataclass(frozen=True)
class ShownContour:
    name: str  # "Contour 1" / "Contour 2"
    contour_id: str
    colour: str  # "orange"
    colour_hex: str  # "#E69F00"
    on_top: bool
    file: str
    sha256: str

    def to_dict(self) -> dict:
        return {
            "name": self.name, "contour_id": self.contour_id, "colour": self.colour,
            "colour_hex": self.colour_hex, "on_top": self.on_top, "file": self.file, "sha256": self.sha256,
        }


def presentation(study: Study, rater: str, case: StudyCase) -> list[ShownContour]:
    """How this rater sees this case: [Contour 1, Contour 2] with colours and drawing order."""
    bits = _digest(study.study_id, rater_key(rater), "show", case.case_id)
    first = bits[0] & 1
    colour_of_first = bits[1] & 1
    first_on_top = bool(bits[2] & 1)
    refs = [case.contours[first], case.contours[1 - first]]
    colours = [study.colours[colour_of_first], study.colours[1 - colour_of_first]]
    return [
        ShownContour(
            name=CONTOUR_NAMES[i], contour_id=refs[i].contour_id, colour=colours[i][0], colour_hex=colours[i][1],
            on_top=(first_on_top if i == 0 else not first_on_top), file=refs[i].file, sha256=refs[i].sha256,
        )
        for i in range(2)
    ]


@dataclass
class CaseDisplay:
    """What the viewer shows for one case: the scan and two outlines, bottom-most contour first."""

    position: int  # 1-based place in the rater's order
    n_cases: int
    scan: object  # napari_vbmd.scan.Scan
    contours: list[tuple[ShownContour, np.ndarray]]  # in drawing order: bottom first


class RatingSession:
    """One rater working through a study; resumes at the first case this rater has not answered."""

    def __init__(self, study: Study, rater: str, clock=time.monotonic):
        self.study = study
        self.rater = " ".join(str(rater).split())
        self.rater_key = rater_key(rater)
        self.store = AnswerStore.for_rater(study.folder, rater)
        self._clock = clock
        self.order = case_order(study, rater)
        records, self.load_report = self.store.load()
        self.answers: dict[str, dict] = {}
        for record in records:
            if (record.get("study_id") == study.study_id and record.get("rater_key") == self.rater_key
                    and isinstance(record.get("case_id"), str)):
                self.answers[record["case_id"]] = record
        self.index = self.first_unanswered()
        self._shown_since: float | None = None
        self._shown_at: str | None = None

    # -- where we are ---------------------------------------------------------------------------
    @property
    def n_cases(self) -> int:
        return len(self.order)

    @property
    def n_answered(self) -> int:
        return sum(1 for cid in self.order if cid in self.answers)

    @property
    def done(self) -> bool:
        return self.n_answered == self.n_cases

    def first_unanswered(self) -> int:
        for i, cid in enumerate(self.order):
            if cid not in self.answers:
                return i
        return len(self.order)

    @property
    def case_id(self) -> str | None:
        return self.order[self.index] if self.index < len(self.order) else None

    def current_answer(self) -> dict | None:
        return self.answers.get(self.case_id) if self.case_id else None

    def shown(self) -> list[ShownContour]:
        return presentation(self.study, self.rater, self.study.case(self.case_id))

    # -- showing a case -------------------------------------------------------------------------
    def load_case(self) -> CaseDisplay:
        """Read the current case's scan and contours, checking they are the files the study was made of."""
        from ..io import read_mask, read_scan

        if self.case_id is None:
            raise VbmdError("all cases are rated")
        case = self.study.case(self.case_id)
        scan_path = self.study.resolve(case.scan)
        if not scan_path.exists():
            raise VbmdError("scan of this case is missing", scan_path)
        if sha256_path(scan_path) != case.scan_sha256:
            raise VbmdError("scan changed since the study was created (SHA-256 differs)", scan_path)
        scan = read_scan(scan_path)
        layers = []
        for shown in self.shown():
            path = self.study.resolve(shown.file)
            if sha256_path(path) != shown.sha256:
                raise VbmdError("contour changed since the study was created (SHA-256 differs)", path)
            layers.append((shown, read_mask(path, like=scan).data.astype(np.uint8)))
        layers.sort(key=lambda item: item[0].on_top)  # bottom first
        self.start_timer()
        return CaseDisplay(position=self.index + 1, n_cases=self.n_cases, scan=scan, contours=layers)

    def start_timer(self) -> None:
        self._shown_since = self._clock()
        self._shown_at = timestamp("milliseconds", utc=True)

    def elapsed(self) -> float:
        return 0.0 if self._shown_since is None else self._clock() - self._shown_since

    # -- answering ------------------------------------------------------------------------------
    def answer(self, choice: str, confidence: int | None = None, comment: str = "") -> dict:
        """Save an answer for the current case now (a change appends a new record)."""
        if choice not in CHOICES:
            raise VbmdError(f"choice must be one of {', '.join(CHOICES)}, got {choice!r}")
        if self.case_id is None:
            raise VbmdError("all cases are rated")
        if confidence is not None and not (1 <= int(confidence) <= 5):
            raise VbmdError("confidence is 1 (unsure) to 5 (sure)")
        shown = self.shown()
        chosen = None if choice == "equal" else shown[0 if choice == "contour_1" else 1]
        case = self.study.case(self.case_id)
        previous = self.answers.get(self.case_id)
        record = {
            "schema": RECORD_SCHEMA,
            "record_id": uuid.uuid4().hex,
            "replaces": previous["record_id"] if previous else None,
            "study_id": self.study.study_id,
            "rater": self.rater,
            "rater_key": self.rater_key,
            "case_id": self.case_id,
            "position": self.index + 1,
            "n_cases": self.n_cases,
            "choice": choice,
            "chosen_name": chosen.name if chosen else None,
            "chosen_colour": chosen.colour if chosen else None,
            "chosen_contour_id": chosen.contour_id if chosen else None,
            "shown": [s.to_dict() for s in shown],
            "scan": case.scan,
            "scan_sha256": case.scan_sha256,
            "confidence": None if confidence is None else int(confidence),
            "comment": str(comment or ""),
            "shown_at": self._shown_at,
            "answered_at": timestamp("milliseconds", utc=True),
            "time_spent_s": round(self.elapsed(), 3),
        }
        self.store.append(record)
        self.answers[self.case_id] = record
        return record

    # -- moving ---------------------------------------------------------------------------------
    def next(self) -> None:
        if self.case_id is not None and self.case_id not in self.answers:
            raise VbmdError("answer this case before moving on")
        if self.study.allow_back:
            self.index = min(self.index + 1, self.n_cases)
        else:
            self.index = self.first_unanswered()
        self._shown_since = None

    @property
    def can_go_back(self) -> bool:
        return self.study.allow_back and self.index > 0

    def previous(self) -> None:
        if not self.study.allow_back:
            raise VbmdError("this study does not let raters go back")
        if self.index == 0:
            raise VbmdError("this is the first case")
        self.index -= 1
        self._shown_since = None
