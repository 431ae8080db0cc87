"""Which measurement a scan or mask file names as its origin, to catch a mask of another scan.

Scanco files carry it: an AIM's processing log keeps the ISQ it was cut from ("Original file"),
the measurement and patient indices and the patient's name (kept too by every mask this project
writes from a scan, and by its phantoms: "Patient Name PHANTOM_<seed>"); an ISQ header holds the
same indices and name. Files of other formats name none, and are not compared.
"""
from __future__ import annotations

import re

from ..naming import strip_vms_version
from ..scan import Scan

#: what is compared, in the words of a Scanco processing log
FIELDS = ("Original file", "Index Measurement", "Index Patient", "Patient Name")


def _from_log(log: str) -> dict[str, str]:
    found = {}
    for field in FIELDS:
        m = re.search(rf"^{re.escape(field)}[ \t]+(\S.*?)[ \t]*$", log, flags=re.MULTILINE)
        if m:
            found[field] = m.group(1)
    original = found.get("Original file", "")
    original = strip_vms_version(original)
    # a mask made from a contour names the contour (.gobj), not the scan: only scans are compared, by
    # name alone (the same measurement copied to another disk or folder keeps its name)
    name = re.split(r"[\]/\\:]", original)[-1].strip().lower()
    if name.endswith(".isq"):
        found["Original file"] = name
    else:
        found.pop("Original file", None)
    return found


def scan_identity(scan: Scan) -> dict[str, str]:
    """The origin fields a scan's file states (empty when it states none)."""
    header = scan.header or {}
    if header.get("format") in ("aim", "phantom") and header.get("processing_log"):
        return _from_log(str(header["processing_log"]))
    if header.get("format") == "isq":
        found = {}
        for field, key in (("Index Measurement", "measurement_index"), ("Index Patient", "patient_index"),
                           ("Patient Name", "patient_name")):
            value = header.get(key)
            if value not in (None, ""):
                found[field] = str(value)
        return found
    return {}


def identity_mismatch(mask: Scan, image: Scan) -> str | None:
    """One line saying how the mask's named origin differs from the scan's, or None."""
    a, b = scan_identity(mask), scan_identity(image)
    differ = [f"{field} {a[field]!r} vs the scan's {b[field]!r}" for field in FIELDS
              if field in a and field in b and a[field].strip().casefold() != b[field].strip().casefold()]
    if not differ:
        return None
    return "names another measurement than the scan: " + "; ".join(differ)
