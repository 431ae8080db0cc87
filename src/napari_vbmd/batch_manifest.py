"""A cohort manifest for `vbmd batch`: which hand each scan holds, from a CSV.

The CSV names each scan in a ``file`` column (or ``image`` or ``path``: relative to the CSV's
folder, or to the batch's input folder, or absolute; a phantom cohort's ``cohort.csv`` works as it
is) or by its batch ``case`` id, and gives its side in a ``hand`` column (``left``, ``right``, or
empty: then the scan's header, else its image, decides, else the case fails alone). Hands from the
manifest are recorded with the source ``manifest``.
"""
from __future__ import annotations

import csv
from pathlib import Path

from .errors import VbmdError

FILE_COLUMNS = ("file", "image", "path")
HAND_VALUES = {"left": "left", "right": "right", "l": "left", "r": "right", "": None}


def read_manifest(path: str | Path, input_dir: str | Path, cases: list) -> dict[str, str | None]:
    """{case id: hand or None} for the discovered ``cases`` the manifest names. Refuses, in one line
    naming the manifest, a manifest without a hand column, with an unknown hand, naming a scan
    twice, or naming one the batch did not find."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as exc:
        raise VbmdError(f"cannot read the manifest ({exc.strerror})", path) from None
    except UnicodeDecodeError:
        raise VbmdError("the manifest is not a text (CSV) file", path) from None
    rows = list(csv.DictReader(text.splitlines()))
    columns = {c.strip().lower(): c for c in (rows[0].keys() if rows else []) if c}
    if "hand" not in columns:
        raise VbmdError("the manifest has no 'hand' column (columns: file or case, and hand)", path)
    key_column = next((columns[c] for c in FILE_COLUMNS if c in columns), None)
    case_column = columns.get("case")
    if key_column is None and case_column is None:
        raise VbmdError("the manifest names no scans: give a 'file' (or 'image') or a 'case' column", path)
    by_path = {Path(c.path).resolve(): c.case for c in cases}
    by_case = {c.case: c.case for c in cases}
    roots = [path.parent, Path(input_dir)]
    hands: dict[str, str | None] = {}
    for number, row in enumerate(rows, 2):
        raw_hand = (row.get(columns["hand"]) or "").strip()
        hand = HAND_VALUES.get(raw_hand.lower(), "?")
        if hand == "?":
            raise VbmdError(f"line {number}: hand must be left, right or empty, got {raw_hand!r}", path)
        case = None
        name = (row.get(key_column) or "").strip() if key_column else ""
        if name:
            for root in roots:
                candidate = (root / name).resolve()
                if candidate in by_path:
                    case = by_path[candidate]
                    break
        elif case_column:
            case = by_case.get((row.get(case_column) or "").strip())
        if case is None:
            label = name or (row.get(case_column) or "").strip() if case_column else name
            raise VbmdError(f"line {number}: {label!r} is not a scan this batch found in its input folder", path)
        if case in hands:
            raise VbmdError(f"line {number}: {case} is named twice", path)
        hands[case] = hand
    return hands
