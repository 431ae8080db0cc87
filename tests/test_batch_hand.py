"""The hand side in `vbmd batch`: a manifest's hand column (source "manifest"), --hand for a whole
folder (source "argument"), and a scan whose hand nothing decides failing alone, saying why."""
from __future__ import annotations

import csv

import pytest

from napari_vbmd.batch import BatchSettings, run_batch
from napari_vbmd.cli import main
from napari_vbmd.errors import VbmdError
from _hand_phantoms import crop
from napari_vbmd.phantom import write_phantom


@pytest.fixture(scope="module")
def headerless(tmp_path_factory):
    """Three small cropped phantoms (two right, one left) without a hand in their headers, and their
    cohort.csv (which has a hand column). Crops the classical method segments right (Dice 0.993-0.994): on
    smaller phantoms its masks lay on other bones or broke up, and on seed 42 it loses the marrow of three slices
    of the head's tip; such masks are refused since 2026-12-02."""
    folder = tmp_path_factory.mktemp("headerless")
    hands = {}
    for i, (seed, hand) in enumerate([(40, "right"), (44, "left"), (43, "right")]):
        name = f"phantom_11_{i:03d}"
        write_phantom(crop(seed=seed, hand=hand), folder, name)
        hands[name] = hand
    (folder / "cohort.csv").write_text("name,image,hand\n" + "".join(f"{n},{n}.aim,{h}\n" for n, h in hands.items()))
    return folder, hands


def _rows(summary):
    return {r["case"]: r for r in summary.table}


def test_nothing_decides_the_hand_so_every_case_fails_alone(headerless, tmp_path):
    folder, hands = headerless
    summary = run_batch(folder, tmp_path / "out", BatchSettings(model="classical"), workers=0)
    assert summary.failed == 3 and summary.processed == 0
    for case in hands:
        row = _rows(summary)[case]
        assert row["status"] == "failed" and row["hand"] is None and not row["mask"]
        assert "cannot tell which hand this is" in row["error"] and "--hand left|right" in row["error"]
    assert not (tmp_path / "out" / "masks").exists()


@pytest.mark.slow
def test_the_cohort_csv_as_manifest_gives_each_hand(headerless, tmp_path):
    folder, hands = headerless
    summary = run_batch(folder, tmp_path / "out", BatchSettings(model="classical"), workers=0,
                        manifest=folder / "cohort.csv")
    assert summary.failed == 0 and summary.manifest == str(folder / "cohort.csv")
    for case, hand in hands.items():
        row = _rows(summary)[case]
        assert (row["hand"], row["hand_source"], row["hand_confidence"]) == (hand, "manifest", 1.0)
    table = list(csv.DictReader(open(tmp_path / "out" / "cohort.csv")))
    assert {r["case"]: (r["hand"], r["hand_source"]) for r in table} == {c: (h, "manifest") for c, h in hands.items()}
    # a rerun is up to date; a changed manifest hand redoes that case only
    again = run_batch(folder, tmp_path / "out", BatchSettings(model="classical"), workers=0,
                      manifest=folder / "cohort.csv")
    assert again.skipped == 3
    first = sorted(hands)[0]
    other = {"left": "right", "right": "left"}[hands[first]]
    changed = tmp_path / "hands.csv"
    changed.write_text("case,hand\n" + "".join(f"{c},{other if c == first else h}\n" for c, h in hands.items()))
    third = run_batch(folder, tmp_path / "out", BatchSettings(model="classical"), workers=0, manifest=changed)
    assert (third.processed, third.skipped) == (1, 2) and _rows(third)[first]["hand"] == other


@pytest.mark.slow
def test_hand_for_a_whole_folder_and_a_partial_manifest(headerless, tmp_path, capsys):
    folder, hands = headerless
    code = main(["batch", str(folder), str(tmp_path / "out"), "--model", "classical", "--workers", "0",
                 "--hand", "left"])
    assert code == 0
    table = list(csv.DictReader(open(tmp_path / "out" / "cohort.csv")))
    assert {(r["hand"], r["hand_source"]) for r in table} == {("left", "argument")}
    assert "left (argument)" in capsys.readouterr().out
    # a manifest naming one case: that one from the manifest, the others fail alone (nothing decides them)
    first = sorted(hands)[0]
    partial = tmp_path / "one.csv"
    partial.write_text(f"file,hand\n{folder / (first + '.aim')},{hands[first]}\n")
    code = main(["batch", str(folder), str(tmp_path / "out2"), "--model", "classical", "--workers", "0",
                 "--manifest", str(partial)])
    assert code == 1
    table = {r["case"]: r for r in csv.DictReader(open(tmp_path / "out2" / "cohort.csv"))}
    assert (table[first]["status"], table[first]["hand_source"]) == ("ok", "manifest")
    assert all(table[c]["status"] == "failed" for c in hands if c != first)


@pytest.mark.parametrize("text, words", [
    ("file\nx.aim\n", "no 'hand' column"),
    ("hand\nleft\n", "names no scans"),
    ("file,hand\nphantom_11_000.aim,both\n", "line 2: hand must be left, right or empty, got 'both'"),
    ("file,hand\nnot_there.aim,left\n", "line 2: 'not_there.aim' is not a scan this batch found"),
    ("file,hand\nphantom_11_000.aim,left\nphantom_11_000.aim,left\n", "line 3: phantom_11_000 is named twice"),
])
def test_bad_manifests_are_refused_before_any_work(headerless, tmp_path, text, words):
    folder, _ = headerless
    manifest = tmp_path / "m.csv"
    manifest.write_text(text)
    with pytest.raises(VbmdError, match=words):
        run_batch(folder, tmp_path / "out", BatchSettings(model="classical"), workers=0, manifest=manifest)
    assert not (tmp_path / "out" / "cases").exists()


def test_hand_given_twice_is_refused(headerless, tmp_path):
    folder, _ = headerless
    with pytest.raises(VbmdError, match="either with --hand left or in the manifest's hand column"):
        run_batch(folder, tmp_path / "out", BatchSettings(model="classical", hand="left"), workers=0,
                  manifest=folder / "cohort.csv")
