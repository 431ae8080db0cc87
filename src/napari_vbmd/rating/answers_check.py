"""Answer records checked before the analysis trusts them: a file that is valid JSON but not what
the rating session writes (a renamed key, a contour id of another case, an unknown choice) is
named with its first problem, instead of breaking the analysis half way."""
from __future__ import annotations

import math

from .session import CHOICES
from .study import Study


def record_problem(record: dict, study: Study) -> str | None:
    """What is wrong with one answer record of this study (None when nothing is)."""
    if record.get("study_id") != study.study_id:
        return ("no study_id" if "study_id" not in record
                else f"an answer of another study ({record.get('study_id')!r}, not {study.study_id})")
    for key in ("record_id", "rater", "rater_key", "case_id", "choice"):
        if not isinstance(record.get(key), str) or not record.get(key):
            return f"no {key}" if key not in record else f"{key} is not a text"
    case = next((c for c in study.cases if c.case_id == record["case_id"]), None)
    if case is None:
        return f"case {record['case_id']!r} is not in the study"
    if record["choice"] not in CHOICES:
        return f"choice {record['choice']!r} is none of {', '.join(CHOICES)}"
    ids = {r.contour_id for r in case.contours}
    shown = record.get("shown")
    if not isinstance(shown, list) or len(shown) != 2 or not all(isinstance(s, dict) for s in shown):
        return "shown is not the two contours shown"
    for s in shown:
        for key, kind in (("name", str), ("contour_id", str), ("colour", str), ("on_top", bool), ("sha256", str)):
            if not isinstance(s.get(key), kind):
                return f"a shown contour has no {key}" if key not in s else f"a shown contour's {key} is malformed"
    if sorted(s["name"] for s in shown) != ["Contour 1", "Contour 2"]:
        return "the shown contours are not named Contour 1 and Contour 2"
    if {s["contour_id"] for s in shown} != ids:
        return f"the shown contour ids are not case {case.case_id}'s"
    if sum(s["on_top"] for s in shown) != 1:
        return "not exactly one shown contour is drawn on top"
    chosen = record.get("chosen_contour_id")
    if record["choice"] == "equal":
        if chosen is not None:
            return "choice equal but a contour is chosen"
    else:
        name = "Contour 1" if record["choice"] == "contour_1" else "Contour 2"
        expected = next(s["contour_id"] for s in shown if s["name"] == name)
        if chosen != expected:
            return f"chosen contour id {chosen!r} is not the one shown as {name}"
    if record.get("replaces") is not None and not isinstance(record.get("replaces"), str):
        return "replaces is malformed"
    spent = record.get("time_spent_s")
    if isinstance(spent, bool) or not isinstance(spent, (int, float)) or not math.isfinite(spent) or spent < 0:
        return "time_spent_s is not a number of seconds"
    confidence = record.get("confidence")
    if confidence is not None and (isinstance(confidence, bool) or confidence not in (1, 2, 3, 4, 5)):
        return "confidence is not 1 to 5"
    return None
