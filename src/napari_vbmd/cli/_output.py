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


def print_table(rows: list[tuple[str, object]], file=None) -> None:
    """Two-column key/value table."""
    out = file or sys.stdout
    width = max((len(k) for k, _ in rows), default=0)
    for key, value in rows:
        out.write(f"{key.ljust(width)}  {_fmt(value)}\n")
