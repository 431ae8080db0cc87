"""Atomic output: write to a temporary file beside the target, then rename over it.

A killed process leaves either the old file or the new one, never half of one. Inputs are never
overwritten: callers pass the paths they read from as ``protect``.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from .errors import VbmdError


def _umask_mode() -> int:
    """The mode a plain ``open()`` would give a new file (mkstemp makes 0600 files)."""
    mask = os.umask(0)
    os.umask(mask)
    return 0o666 & ~mask


def _same_file(a: Path, b: Path) -> bool:
    try:
        return a.exists() and b.exists() and os.path.samefile(a, b)
    except OSError:
        return False


def check_not_input(target: str | Path, protect=()) -> Path:
    target = Path(target)
    for p in protect:
        if p is None:
            continue
        p = Path(p)
        if _same_file(target, p) or target.resolve() == p.resolve():
            raise VbmdError("refusing to overwrite an input file", target)
    if target.exists() and target.is_dir():
        raise VbmdError("output path is a directory", target)
    parent = target.parent
    if not parent.exists():
        raise VbmdError("output folder does not exist", parent)
    return target


@contextlib.contextmanager
def atomic_path(target: str | Path, protect=(), suffix: str | None = None):
    """Yield a temporary path to write to; it replaces ``target`` only if the block succeeds."""
    target = check_not_input(target, protect)
    # Keep the full suffix (".nii.gz") so libraries that dispatch on extensions behave.
    name = target.name
    if suffix is None:
        suffix = "".join(Path(name).suffixes) or ""
    fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{suffix}", dir=target.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _umask_mode())
        os.replace(tmp_path, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_text_atomic(target: str | Path, text: str, protect=()) -> Path:
    with atomic_path(target, protect) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(target)


def write_bytes_atomic(target: str | Path, data: bytes, protect=()) -> Path:
    with atomic_path(target, protect) as tmp:
        tmp.write_bytes(data)
    return Path(target)


def fsync_dir(path: str | Path) -> None:
    """Make a rename or a new file in ``path`` durable (best effort: not every filesystem allows it)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def update_digest(digest, path: str | Path, block_size: int = 1 << 20):
    """Feed a file's bytes into a hashlib digest without reading it whole; returns the digest."""
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(block_size), b""):
            digest.update(block)
    return digest


def sha256_file(path: str | Path) -> str:
    return update_digest(hashlib.sha256(), path).hexdigest()
