"""The answer store: append-only, durable, survives a killed writer; sessions resume; history is kept."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from _rating_helpers import make_manifest
from napari_vbmd.errors import VbmdError
from napari_vbmd.rating import AnswerStore, RatingSession, create_study, load_study, read_jsonl
from napari_vbmd.rating.store import latest_answers, load_all_answers

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGKILL is POSIX")


@pytest.fixture(scope="module")
def study_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("store")
    create_study(make_manifest(root / "m", n_cases=3), root / "study", allow_back=True)
    return root / "study"


def fresh_copy(study_dir: Path, tmp_path: Path) -> Path:
    """A study folder of its own for one test (the answers/ folder is what the tests change)."""
    import shutil

    target = tmp_path / "study"
    shutil.copytree(study_dir, target)
    return target


# The writer: a real RatingSession answering again and again, printing the id of each answer
# once `answer()` has returned (i.e. once the rater would have seen it confirmed).
WRITER = textwrap.dedent("""
    import os, sys, time
    from napari_vbmd.rating import RatingSession, load_study
    import napari_vbmd.rating.store as store

    folder, rater, tear_after = sys.argv[1], sys.argv[2], int(sys.argv[3])
    session = RatingSession(load_study(folder), rater)
    real_write = os.write
    count = 0

    def torn_write(fd, data):
        # the process dies in the middle of writing a line: half of it reaches the file
        half = bytes(data)[: len(data) // 2]
        real_write(fd, half)
        os.fsync(fd)
        print("TORN", flush=True)
        time.sleep(600)

    while True:
        if tear_after >= 0 and count == tear_after:
            store.os.write = torn_write
        record = session.answer(("contour_1", "contour_2", "equal")[count % 3], comment="x" * (count % 50))
        count += 1
        print("DONE", record["record_id"], flush=True)
        if session.study.allow_back and count % 4 == 0:
            session.next()
            if session.case_id is None:
                session.index = 0
""")


def run_writer(folder: Path, rater: str, tear_after: int, stop_after_lines: int):
    """Start a writer, read its acknowledgements, SIGKILL it; return the acknowledged ids."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(folder), rater, str(tear_after)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    acknowledged, torn = [], False
    try:
        for line in proc.stdout:
            if line.startswith("DONE"):
                acknowledged.append(line.split()[1])
            elif line.startswith("TORN"):
                torn = True
                break
            if len(acknowledged) >= stop_after_lines:
                break
        else:
            raise AssertionError(f"writer ended on its own: {proc.stderr.read()}")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    return acknowledged, torn


def test_killed_in_the_middle_of_a_line_loses_no_completed_answer(study_dir, tmp_path):
    folder = fresh_copy(study_dir, tmp_path)
    acknowledged, torn = run_writer(folder, "Alice", tear_after=7, stop_after_lines=10_000)
    assert torn and len(acknowledged) == 7
    store = AnswerStore.for_rater(folder, "Alice")
    raw = store.path.read_bytes()
    assert not raw.endswith(b"\n")  # the file really ends in half a line
    records, report = store.load()
    assert [r["record_id"] for r in records] == acknowledged
    assert report.torn_tail and report.damaged_lines == []

    # the next session resumes from the completed answers; its first append closes the torn line
    session = RatingSession(load_study(folder), "alice")
    assert session.load_report.torn_tail
    assert set(session.answers) == {r["case_id"] for r in records} and len(session.answers) == 2  # 4 + 3 answers
    assert all(session.answers[r["case_id"]]["record_id"] == r["record_id"] for r in records[-1:])
    session.index = 0
    record = session.answer("equal")
    records, report = store.load()
    assert [r["record_id"] for r in records] == acknowledged + [record["record_id"]]
    assert not report.torn_tail and report.damaged_lines == [8]  # the torn line stays, ignored


def test_killed_at_a_random_moment_keeps_every_acknowledged_answer(study_dir, tmp_path):
    folder = fresh_copy(study_dir, tmp_path)
    acknowledged, torn = run_writer(folder, "Bob", tear_after=-1, stop_after_lines=25)
    assert not torn and len(acknowledged) >= 25
    records, report = AnswerStore.for_rater(folder, "Bob").load()
    ids = [r["record_id"] for r in records]
    # every acknowledged answer is there, in order; at most one more (written, not yet acknowledged)
    assert ids[: len(acknowledged)] == acknowledged
    assert len(ids) - len(acknowledged) <= 1
    assert report.damaged_lines == []


def test_records_are_whole_lines_and_never_rewritten(tmp_path):
    store = AnswerStore(tmp_path / "answers" / "a.jsonl")
    store.append({"n": 1, "text": "ünïcode\nnewline inside"})
    first = store.path.read_bytes()
    store.append({"n": 2})
    data = store.path.read_bytes()
    assert data.startswith(first) and data.count(b"\n") == 2
    records, report = read_jsonl(store.path)
    assert [r["n"] for r in records] == [1, 2] and records[0]["text"].endswith("newline inside")
    assert not report.torn_tail


def test_session_resumes_where_it_stopped(study_dir, tmp_path):
    folder = fresh_copy(study_dir, tmp_path)
    study = load_study(folder)
    first = RatingSession(study, "Dr  Carol")
    order = list(first.order)
    first.answer("contour_1", confidence=4, comment="clear")
    first.next()
    first.answer("equal")
    first.next()
    assert first.index == 2 and first.n_answered == 2
    del first

    again = RatingSession(load_study(folder), "dr carol")  # the same rater, typed differently
    assert again.order == order
    assert again.index == 2 and again.case_id == order[2] and again.n_answered == 2
    assert again.answers[order[0]]["confidence"] == 4 and again.answers[order[0]]["comment"] == "clear"
    again.answer("contour_2")
    again.next()
    assert again.done and again.case_id is None
    with pytest.raises(VbmdError, match="all cases are rated"):
        again.answer("equal")
    # another rater starts from the beginning of their own order, in their own file
    other = RatingSession(load_study(folder), "Dave")
    assert other.index == 0 and other.n_answered == 0
    assert other.store.path != again.store.path


def test_changing_an_answer_keeps_the_history(study_dir, tmp_path):
    folder = fresh_copy(study_dir, tmp_path)
    ticks = iter([100.0, 112.5, 130.0])
    session = RatingSession(load_study(folder), "Erin", clock=lambda: next(ticks))
    session.load_case()  # shown at t=100
    first = session.answer("contour_1")
    second = session.answer("contour_2", confidence=2, comment="looked again")
    assert first["time_spent_s"] == 12.5 and second["time_spent_s"] == 30.0
    assert second["replaces"] == first["record_id"] and first["replaces"] is None
    records, _ = session.store.load()
    assert [r["choice"] for r in records] == ["contour_1", "contour_2"]
    latest = latest_answers(records)
    assert latest[("erin", session.case_id)]["record_id"] == second["record_id"]
    # a new session sees the changed answer
    assert RatingSession(load_study(folder), "Erin").answers[session.case_id]["choice"] == "contour_2"


def test_an_answer_records_what_was_shown(study_dir, tmp_path):
    folder = fresh_copy(study_dir, tmp_path)
    study = load_study(folder)
    session = RatingSession(study, "Frank")
    display = session.load_case()
    record = session.answer("contour_2", confidence=5)
    records, _ = load_all_answers(folder)
    assert records[-1]["record_id"] == record["record_id"]
    case = study.case(record["case_id"])
    assert record["rater"] == "Frank" and record["study_id"] == study.study_id
    assert record["choice"] == "contour_2" and record["chosen_name"] == "Contour 2"
    shown = {s["name"]: s for s in record["shown"]}
    assert set(shown) == {"Contour 1", "Contour 2"}
    assert {s["colour"] for s in shown.values()} == {"orange", "blue"}
    assert {s["contour_id"] for s in shown.values()} == {r.contour_id for r in case.contours}
    assert {s["sha256"] for s in shown.values()} == {r.sha256 for r in case.contours}
    assert record["chosen_colour"] == shown["Contour 2"]["colour"]
    assert record["chosen_contour_id"] == shown["Contour 2"]["contour_id"]
    assert record["scan_sha256"] == case.scan_sha256
    assert record["shown_at"] <= record["answered_at"] and record["time_spent_s"] >= 0
    assert record["confidence"] == 5 and record["comment"] == ""
    # what was drawn is what was recorded: the top outline is the one marked on top
    assert display.contours[-1][0].on_top and shown[display.contours[-1][0].name]["on_top"]
    assert json.loads(session.store.path.read_text().splitlines()[-1]) == record


def test_going_back_only_when_the_study_allows_it(tmp_path):
    root = tmp_path
    create_study(make_manifest(root / "m", n_cases=2), root / "strict")
    strict = RatingSession(load_study(root / "strict"), "Gina")
    with pytest.raises(VbmdError, match="answer this case"):
        strict.next()
    strict.answer("equal")
    strict.next()
    assert not strict.can_go_back
    with pytest.raises(VbmdError, match="does not let raters go back"):
        strict.previous()
    with pytest.raises(VbmdError, match="choice must be one of"):
        strict.answer("contour_3")
    with pytest.raises(VbmdError, match="confidence"):
        strict.answer("equal", confidence=9)
