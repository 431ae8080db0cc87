"""Rating studies: manifest checks, the study folder, reproducible and blind randomisation."""
from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from _rating_helpers import SOURCES, make_case_files, make_manifest
from napari_vbmd.cli import main
from napari_vbmd.errors import VbmdError
from napari_vbmd.io import read_mask, write_image, write_mask
from napari_vbmd.rating import RatingSession, case_order, create_study, load_mapping, load_study, presentation
from napari_vbmd.rating.study import ContourRef, Study, StudyCase
from napari_vbmd.scan import Scan


def fake_study(tmp_path, n=20, study_id="study-1") -> Study:
    cases = [
        StudyCase(f"c{i:02d}", "scan.nii.gz", "0" * 64,
                  [ContourRef(f"x{i}", f"x{i}.nii.gz", "1" * 64), ContourRef(f"y{i}", f"y{i}.nii.gz", "2" * 64)])
        for i in range(n)
    ]
    return Study(folder=tmp_path, study_id=study_id, created="", allow_back=False, cases=cases)


def test_case_order_is_reproducible_per_rater_and_differs_between_raters(tmp_path):
    study = fake_study(tmp_path)
    alice = case_order(study, "Alice")
    assert sorted(alice) == sorted(c.case_id for c in study.cases)
    assert case_order(fake_study(tmp_path), "Alice") == alice  # a fresh load, same order
    assert case_order(study, "  alice ") == alice  # the same rater, typed differently
    bob = case_order(study, "Bob")
    assert bob != alice
    assert case_order(fake_study(tmp_path, study_id="study-2"), "Alice") != alice  # seeded by the study too
    shown_alice = [presentation(study, "Alice", c) for c in study.cases]
    assert [presentation(study, "Alice", c) for c in study.cases] == shown_alice
    assert [presentation(study, "Bob", c) for c in study.cases] != shown_alice


def test_presentation_randomises_name_colour_and_drawing_order(tmp_path):
    study = fake_study(tmp_path, n=200)
    shown = [presentation(study, "Alice", c) for c in study.cases]
    for case, (one, two) in zip(study.cases, shown):
        assert (one.name, two.name) == ("Contour 1", "Contour 2")
        assert {one.contour_id, two.contour_id} == {r.contour_id for r in case.contours}
        assert {one.colour_hex, two.colour_hex} == {"#E69F00", "#0072B2"}
        assert one.on_top != two.on_top
    first_listed_is_1 = Counter(s[0].contour_id.startswith("x") for s in shown)
    orange_is_1 = Counter(s[0].colour == "orange" for s in shown)
    one_on_top = Counter(s[0].on_top for s in shown)
    for counts in (first_listed_is_1, orange_is_1, one_on_top):
        assert 70 < counts[True] < 130  # each a fair coin (binomial 200, 1/2: 6 SD margin)
    # the three coins are not the same coin
    assert sum(s[0].contour_id.startswith("x") == (s[0].colour == "orange") for s in shown) not in (0, 200)


def test_create_study_hides_sources_and_keeps_the_mapping(tmp_path):
    manifest = make_manifest(tmp_path / "m", n_cases=3)
    study = create_study(manifest, tmp_path / "study")
    assert study.n_cases == 3 and not study.allow_back
    folder = tmp_path / "study"
    # nothing outside owner/ names a source or an original contour file
    originals = [p.name for p in (tmp_path / "m" / "inputs").iterdir() if "contour" in p.name]
    for path in folder.rglob("*"):
        if not path.is_file() or "owner" in path.relative_to(folder).parts:
            continue
        assert not any(word in path.name.lower() for word in ("expert", "network", "contour_a", "contour_b"))
        blob = path.read_bytes().lower()
        for word in (b"expert", b"network", *(o.lower().encode() for o in originals)):
            assert word not in blob, (path, word)
    # contours are all re-written in one format on the scan's grid, whatever format they came in
    public = json.loads((folder / "study.json").read_text())
    for case in public["cases"]:
        files = [c["file"] for c in case["contours"]]
        assert all(f.endswith(".nii.gz") for f in files)
        masks = [read_mask(folder / f) for f in files]
        assert masks[0].same_grid(masks[1])
    mapping = load_mapping(study)
    assert mapping["sources"] == sorted(SOURCES)
    for case in study.cases:
        assert sorted(mapping["cases"][case.case_id].values()) == sorted(SOURCES)
    # the hashes in study.json are those of the files
    from napari_vbmd.rating.study import sha256_path
    case = study.cases[0]
    assert sha256_path(case.scan) == case.scan_sha256
    assert all(sha256_path(folder / r.file) == r.sha256 for r in case.contours)


def test_rating_needs_no_mapping(tmp_path):
    """The rating side never reads the owner's mapping: move it away and rate."""
    manifest = make_manifest(tmp_path / "m", n_cases=2)
    mapping = tmp_path / "elsewhere" / "mapping.json"
    mapping.parent.mkdir()
    create_study(manifest, tmp_path / "study", mapping_path=mapping)
    assert not (tmp_path / "study" / "owner" / "mapping.json").exists()
    session = RatingSession(load_study(tmp_path / "study"), "Alice")
    display = session.load_case()
    assert display.scan.shape == display.contours[0][1].shape == display.contours[1][1].shape
    assert [c.on_top for c, _ in display.contours] == [False, True]
    session.answer("contour_2")
    assert load_mapping(load_study(tmp_path / "study"), mapping)["cases"]


def test_changed_input_is_refused_when_shown(tmp_path):
    manifest = make_manifest(tmp_path / "m", n_cases=1)
    study = create_study(manifest, tmp_path / "study")
    scan_path = Path(study.cases[0].scan)
    scan_path.write_bytes(scan_path.read_bytes() + b"\0")
    with pytest.raises(VbmdError, match="changed since the study was created"):
        RatingSession(load_study(tmp_path / "study"), "Alice").load_case()


def test_broken_manifest_is_refused_with_one_line_per_problem(tmp_path, capsys):
    good_scan, good_a, good_b = make_case_files(tmp_path / "in", "good", seed=1)
    shifted = Scan(data=np.zeros((6, 24, 24), np.float32), spacing=(0.0607,) * 3, origin=(1.0, 2.03, 3.0),
                   unit="mg_ha_cm3")  # half a voxel off the contours' grid
    other_scan = write_image(tmp_path / "in" / "shifted_scan.nii.gz", shifted)
    wrong_grid = Scan(data=np.ones((6, 30, 30), np.uint8), spacing=(0.082, 0.082, 0.082), kind="mask")
    wrong_path = write_mask(tmp_path / "in" / "wrong_grid.nii.gz", wrong_grid)
    garbage = tmp_path / "in" / "garbage.nii.gz"
    garbage.write_bytes(b"\x1f\x8bnot really a nifti")
    rows = [
        "case_id,scan,contour_a,source_a,contour_b,source_b",
        f"c1,{good_scan},{good_a},expert,{good_b},network",
        f"c2,{good_scan},{tmp_path}/in/missing.nii.gz,expert,{good_b},network",
        f"c3,{good_scan},{good_a},expert,{wrong_path},network",
        f"c4,{good_scan},{garbage},expert,{good_b},network",
        f"c5,{other_scan},{good_a},expert,{good_b},network",
    ]
    manifest = tmp_path / "manifest.csv"
    manifest.write_text("\n".join(rows) + "\n")
    with pytest.raises(VbmdError) as info:
        create_study(manifest, tmp_path / "study")
    lines = str(info.value).splitlines()
    assert lines[0].endswith("5 problems:")
    assert sum("line 3 (case c2): contour_a" in l and "no such file" in l for l in lines) == 1
    assert sum("line 4 (case c3): contour_b" in l and "voxel size" in l for l in lines) == 1
    assert sum("line 5 (case c4): contour_a" in l for l in lines) == 1
    assert sum("line 6 (case c5):" in l and "not a whole number" in l for l in lines) == 2  # both contours
    assert not (tmp_path / "study").exists()
    assert not list(tmp_path.glob(".study.partial-*"))

    # the CLI prints the same lines and exits 2
    assert main(["study", "create", str(manifest), "-o", str(tmp_path / "study")]) == 2
    err = capsys.readouterr().err
    assert "5 problems" in err and err.count("\n  line ") == 5


def test_manifest_table_problems(tmp_path):
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,scan,contour_a,source_a,contour_b,source_b\n"
                        "a,s.nii,x.nii,expert,y.nii,expert\n"
                        "a,s.nii,x.nii,expert,y.nii,net\n"
                        "b,,x.nii,expert,y.nii,net\n")
    with pytest.raises(VbmdError) as info:
        create_study(manifest, tmp_path / "study")
    text = str(info.value)
    assert "3 problems" in text
    assert "line 2 (case a): both contours have the source 'expert'" in text
    assert "line 3 (case a): case id repeats line 2" in text
    assert "line 4 (case b): empty scan" in text
    bad_columns = tmp_path / "cols.csv"
    bad_columns.write_text("case,scan\n1,2\n")
    with pytest.raises(VbmdError, match="missing column"):
        create_study(bad_columns, tmp_path / "study")


def test_json_manifest_and_cli_create(tmp_path, capsys):
    scan, a, b = make_case_files(tmp_path / "in", "j1")
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"cases": [
        {"case_id": "j1", "scan": f"in/{scan.name}", "contour_a": f"in/{a.name}", "source_a": "expert",
         "contour_b": f"in/{b.name}", "source_b": "network v2"}]}))
    assert main(["study", "create", str(manifest), "-o", str(tmp_path / "s"), "--allow-back", "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_cases"] == 1 and out["allow_back"] is True
    assert load_study(tmp_path / "s").allow_back
    # an existing non-empty folder is never reused
    assert main(["study", "create", str(manifest), "-o", str(tmp_path / "s")]) == 2


def test_rating_engine_imports_no_napari_or_qt():
    import subprocess
    import sys

    code = (
        "import sys, napari_vbmd.rating, napari_vbmd.rating.analysis, napari_vbmd.cli.study\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('napari', 'qtpy', 'PyQt5', 'PySide2', 'PyQt6', 'PySide6', 'vispy'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == ""
