"""Shared output helpers: JSON for programs, aligned tables for people."""
from __future__ import annotations

import json
import sys

from ..util import jsonable


def print_json(payload, file=None) -> None:
    json.dump(jsonable(payload), file or sys.stdout, indent=2)
    (file or sys.stdout).write("\n")


def _fmt(value) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return " x ".join(_fmt(v) for v in value) if all(isinstance(v, (int, float)) for v in value) else str(value)
    if value is None:
        return "-"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_fmt(v)}" for k, v in value.items())
    return str(value)


def vbmd_rows(result) -> list[tuple[str, object]]:
    """The figures of a :class:`~napari_vbmd.measure.VbmdResult` as table rows."""
    return [
        ("D100 (mg HA/cm3)", round(result.d100_mg_ha_cm3, 2)),
        ("SD (mg HA/cm3)", round(result.sd_mg_ha_cm3, 2)),
        ("voxels", result.n_voxels),
        ("volume (mm3)", round(result.volume_mm3, 2)),
        ("slices", f"{result.n_slices} ({result.first_slice} to {result.last_slice})"),
        ("mean slice area (mm2)", round(result.mean_slice_area_mm2, 2)),
    ]


def print_table(rows: list[tuple[str, object]], file=None) -> None:
    """Two-column key/value table."""
    out = file or sys.stdout
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        out.write(f"{key.ljust(width)}  {_fmt(value)}\n")
