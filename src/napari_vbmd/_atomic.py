"""Atomic output: write to a temporary file beside the target, then rename over it.

A killed process leaves either the old file or the new one, never half of one. Inputs are never
overwritten: callers pass the paths they read from as ``protect``.
"""
from __future__ import annotations

import contextlib
import os
import stat
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


def _file_kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a regular file"


def non_regular_reason(path: str | Path) -> str | None:
    """Why ``path`` is not a regular file that can be read without blocking (None when it is one).

    FIFOs, sockets and devices are refused before anything opens them: opening a FIFO for reading
    blocks until a writer appears, and a device can be endless.
    """
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "no such file"
    except OSError as exc:
        return f"cannot read file ({exc.strerror})"
    if stat.S_ISREG(mode):
        return None
    return f"is {_file_kind(mode)}, not a regular file"


def require_regular_file(path: str | Path, allow_folder: bool = False) -> Path:
    """``path`` if it is a regular file (or, with ``allow_folder``, a folder); else a one-line VbmdError."""
    path = Path(path)
    reason = non_regular_reason(path)
    if reason is None or (allow_folder and path.is_dir()):
        return path
    raise VbmdError("no such file or folder" if reason == "no such file" else reason, path)


def check_not_input(target: str | Path, protect=()) -> Path:
    """``target`` if it may be written: not one of the files in ``protect`` (what the command
    reads), not a folder, in a folder that exists."""
    target = Path(target)
    for p in protect:
        if p is None:
            continue
        p = Path(p)
        if _same_file(target, p) or target.resolve() == p.resolve():
            raise VbmdError("refusing to overwrite an input file", target)
    if target.exists() and target.is_dir():
        raise VbmdError("output path is a directory", target)
    if target.exists() and non_regular_reason(target):
        raise VbmdError(f"output path {non_regular_reason(target)}", target)
    parent = target.parent
    if not parent.exists():
        raise VbmdError("output folder does not exist", parent)
    if not parent.is_dir():
        raise VbmdError("is not a folder, so nothing can be written in it", parent)
    return target


def check_output_folder(folder: str | Path) -> Path:
    """Say in one line why ``folder`` cannot become an output folder, without creating it."""
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise VbmdError("exists and is not a folder; give a folder for the output", folder)
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise VbmdError(f"cannot be created: {existing} is a file, not a folder", folder)
    if not os.access(existing, os.W_OK | os.X_OK):
        raise VbmdError(f"cannot write in {existing} (permission denied)", folder)
    return folder


def ensure_output_folder(folder: str | Path, protect=()) -> Path:
    """Create an output folder (and its parents) or say in one line why it cannot be one."""
    folder = Path(folder)
    for p in protect:
        if p is not None and (folder.resolve() == Path(p).resolve()):
            raise VbmdError("the output folder is one of the command's inputs", folder)
    if folder.exists() and not folder.is_dir():
        raise VbmdError("exists and is not a folder; give a folder for the output", folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except FileExistsError:
        raise VbmdError("a part of this path is a file, not a folder", folder) from None
    except OSError as exc:
        raise VbmdError(f"cannot create the output folder ({exc.strerror})", folder) from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise VbmdError("cannot write in the output folder (permission denied)", folder)
    return folder


@contextlib.contextmanager
def atomic_path(target: str | Path, protect=(), suffix: str | None = None):
    """Yield a temporary path to write to; it replaces ``target`` only if the block succeeds."""
    target = check_not_input(target, protect)
    # Keep the full suffix (".nii.gz") so libraries that dispatch on extensions behave.
    name = target.name
    if suffix is None:
        suffix = "".join(Path(name).suffixes) or ""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", suffix=f".part{suffix}", dir=target.parent)
    except OSError as exc:  # a read-only folder, a full disk: name the user's path, not a temporary one
        raise VbmdError(f"cannot write here ({exc.strerror or exc})", target) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp_path, _umask_mode())
        os.replace(tmp_path, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        if exc.filename is not None and Path(str(exc.filename)) not in (tmp_path, target):
            raise  # about another file (e.g. an input the block reads): not this output's problem
        raise VbmdError(f"cannot write ({exc.strerror or exc})", target) from None
    except BaseException:
        with contextlib.suppress(OSError):
            tmp_path.unlink()
        raise


def write_text_atomic(target: str | Path, text: str, protect=()) -> Path:
    with atomic_path(target, protect) as tmp:
        tmp.write_text(text, encoding="utf-8")
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

