"""Small helpers every part of the engine uses: plain JSON values, time stamps, SHA-256 of files.

One definition each, so that a record, a report and a study name the same file by the same digest
and write the same kind of time stamp.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import math
from pathlib import Path

import numpy as np

from .errors import VbmdError


def jsonable(value):
    """``value`` as plain JSON values: numpy arrays and scalars unwrapped, NaN and infinities as null,
    dictionary keys as strings, tuples as lists."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        return jsonable(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def is_finite_number(value) -> bool:
    """Whether ``value`` is an int or float that is neither NaN nor infinite (None is not)."""
    return isinstance(value, (int, float)) and math.isfinite(value)


def timestamp(timespec: str = "seconds", utc: bool = False) -> str:
    """Now, in ISO 8601 with its offset: local time (what a reviewer reads), or UTC with ``utc``."""
    now = _dt.datetime.now(_dt.timezone.utc)
    return (now if utc else now.astimezone()).isoformat(timespec=timespec)


def update_digest(digest, path: str | Path, block_size: int = 1 << 22):
    """Feed a file's bytes into a hashlib digest without reading it whole; returns the digest."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            digest.update(block)
    return digest


def sha256_files(paths, names=None) -> str:
    """One SHA-256 over the files' contents in the order given, each preceded by its name (UTF-8 and
    a NUL byte) when ``names`` are given. A single file without a name: the file's own SHA-256."""
    digest = hashlib.sha256()
    for i, path in enumerate(paths):
        if names is not None:
            digest.update(names[i].encode("utf-8") + b"\0")
        update_digest(digest, path)
    return digest.hexdigest()


def sha256_file(path: str | Path) -> str:
    """SHA-256 of one file's bytes (what ``sha256sum`` prints)."""
    return sha256_files([path])


def input_sha256(path: str | Path) -> str:
    """SHA-256 of a scan: of its file, or of a DICOM folder's files (names and contents, in name
    order, hidden files left out). Unreadable: a one-line VbmdError naming the path."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            return sha256_files(files, [p.name for p in files])
        return sha256_file(path)
    except OSError as exc:
        raise VbmdError(f"cannot read ({exc.strerror})", path) from None
