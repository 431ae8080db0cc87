"""Append-only, crash-safe answer store: one JSON object per line, one file per rater.

Each answer is written as one whole line with a single ``write`` on a file opened with
``O_APPEND``, then flushed to disk with ``fsync`` before the call returns: an answer the rater saw
confirmed survives a crash, a kill or a power cut. A process killed mid-write can leave at most
an incomplete last line; loading ignores it (and counts it), and the next append starts on a
fresh line, so complete lines are never lost. Nothing is ever rewritten: changing an answer
appends a new record, and the latest record of a case wins.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from pathlib import Path

from .._atomic import fsync_dir
from ..errors import VbmdError

ANSWERS_DIR = "answers"


def rater_key(name: str) -> str:
    """The identity of a rater: whitespace-normalised and case-insensitive ("Dr  Smith" == "dr smith")."""
    key = " ".join(str(name).split()).casefold()
    if not key:
        raise VbmdError("enter the rater's name")
    return key


def rater_file_name(name: str) -> str:
    key = rater_key(name)
    slug = re.sub(r"[^a-z0-9]+", "-", key).strip("-")[:40] or "rater"
    return f"{slug}-{hashlib.sha256(key.encode()).hexdigest()[:8]}.jsonl"


class LoadReport:
    """What loading found besides the records: a torn last line, damaged lines in between."""

    def __init__(self):
        self.torn_tail = False
        self.damaged_lines: list[int] = []
        self.unreadable: str | None = None  # why the file could not be read at all


def read_jsonl(path: str | Path) -> tuple[list[dict], LoadReport]:
    """All complete records of a JSON Lines file; an unterminated last line is ignored."""
    path = Path(path)
    report = LoadReport()
    if not path.exists():
        return [], report
    data = path.read_bytes()
    lines = data.split(b"\n")
    tail = lines.pop()  # b"" when the file ends with a newline
    if tail.strip():
        report.torn_tail = True
    records = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError, RecursionError):
            # A torn line from an earlier crash, terminated by the next append.
            report.damaged_lines.append(number)
            continue
        if isinstance(record, dict):
            records.append(record)
        else:
            report.damaged_lines.append(number)
    return records, report


class AnswerStore:
    """One rater's answers in ``STUDY_DIR/answers/<rater>.jsonl``."""

    def __init__(self, path: str | Path):
        self.path = Path(path)

    @classmethod
    def for_rater(cls, study_folder: str | Path, rater: str) -> "AnswerStore":
        return cls(Path(study_folder) / ANSWERS_DIR / rater_file_name(rater))

    def load(self) -> tuple[list[dict], LoadReport]:
        return read_jsonl(self.path)

    def append(self, record: dict) -> None:
        """Write one record as one line and make it durable before returning."""
        line = json.dumps(record, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode("utf-8")
        if b"\n" in line:
            raise ValueError("a record must serialise to one line")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            prefix = b""
            if size:
                with open(self.path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        prefix = b"\n"  # close a line torn by an earlier crash; it stays ignored
            payload = prefix + line + b"\n"
            view = memoryview(payload)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:
            fsync_dir(self.path.parent)


def load_all_answers(study_folder: str | Path) -> tuple[list[dict], dict[str, LoadReport]]:
    """Every rater's records, in each file's order (each marked with its file's name), with what
    loading found per file. A folder or other non-file named ``*.jsonl`` is reported, not read."""
    from .._atomic import non_regular_reason

    folder = Path(study_folder) / ANSWERS_DIR
    records: list[dict] = []
    reports: dict[str, LoadReport] = {}
    if not folder.is_dir():
        return records, reports
    for path in sorted(folder.glob("*.jsonl")):
        report = LoadReport()
        reports[path.name] = report
        reason = non_regular_reason(path)
        if reason:
            report.unreadable = reason
            continue
        try:
            recs, report = read_jsonl(path)
        except OSError as exc:
            report.unreadable = f"cannot read ({exc.strerror})"
            continue
        reports[path.name] = report
        for order, record in enumerate(recs):
            record = dict(record)
            record["_file_order"] = order
            record["_file"] = path.name
            records.append(record)
    return records, reports


def latest_answers(records: list[dict]) -> dict[tuple[str, str], dict]:
    """The answer that counts per (rater, case): the last one appended."""
    latest: dict[tuple[str, str], dict] = {}
    for record in records:
        latest[(record["rater_key"], record["case_id"])] = record
    return latest
