"""Issue 21, rating studies: blinding (item 14), the mapping never over an input (13), a manifest's
problems in one pass (12), answers that are valid JSON but wrong (10)."""
from __future__ import annotations

import json

import pytest

from napari_vbmd import VbmdError
from napari_vbmd.io import read_mask, write_mask
from napari_vbmd.rating import RatingSession, create_study, load_study
from napari_vbmd.rating.study import owner_folder

from _inputs_helpers import run_cli
from _rating_helpers import SOURCES, make_case_files, make_manifest


def _sha(path):
    import hashlib

    return hashlib.sha256(path.read_bytes()).hexdigest()


# -- item 14 ----------------------------------------------------------------------------------------------
def test_contour_copies_cannot_be_traced_to_their_sources(tmp_path):
    """A contour that is a NIfTI this project wrote (like `vbmd segment -o X.nii.gz`) was copied byte
    for byte: its SHA-256 in study.json let a rater recompute the network's file and unblind."""
    manifest = make_manifest(tmp_path, n_cases=2)
    sources = sorted((tmp_path / "inputs").glob("*_contour.*"))
    source_hashes = {_sha(p) for p in sources}
    # what a rater could make: the same voxels re-written the way the study writes them
    remade = set()
    for p in sources:
        mask = read_mask(p)
        remade.add(_sha(write_mask(tmp_path / f"remade_{p.stem.split('.')[0]}.nii.gz",
                                   mask.with_data(mask.data, header={}, source=None))))
    study = create_study(manifest, tmp_path / "study")
    copies = sorted((tmp_path / "study" / "contours").rglob("*.nii.gz"))
    assert len(copies) == 4
    public = json.loads((tmp_path / "study" / "study.json").read_text())
    listed = {ref["sha256"] for case in public["cases"] for ref in case["contours"]}
    assert listed == {_sha(p) for p in copies}  # the hashes raters see are the copies'
    assert not listed & (source_hashes | remade)  # ... and no file a rater has or can make hashes like them
    for copy in copies:  # no header word names a source, a file or a tool run
        header = copy.read_bytes()
        assert not any(word.encode() in header for word in ("expert", "network", "contour", "tif"))
    assert study.n_cases == 2


def test_everything_that_reveals_the_mapping_stays_out_of_the_raters_folder(tmp_path, capsys):
    manifest = make_manifest(tmp_path, n_cases=2)
    code, out, _ = run_cli(capsys, "study", "create", manifest, "-o", tmp_path / "study")
    assert code == 0 and f"{tmp_path / 'study-owner' / 'mapping.json'}" in out and "keep from raters" in out
    handed_out = [p for p in (tmp_path / "study").rglob("*") if p.is_file()]
    assert not [p for p in handed_out if "owner" in p.parts or p.name.startswith("manifest")]
    for p in handed_out:
        assert not any(s.encode() in p.read_bytes() for s in SOURCES), p
    owner = json.loads((owner_folder(tmp_path / "study") / "mapping.json").read_text())
    assert owner["manifest_copy"] == manifest.read_text() and sorted(owner["sources"]) == sorted(SOURCES)
    # the analysis goes beside the study too, not into it
    RatingSession(load_study(tmp_path / "study"), "Ann").answer("equal")
    code, out, _ = run_cli(capsys, "study", "analyze", tmp_path / "study", "--json")
    assert code == 0 and json.loads(out)["outputs"]["summary"].startswith(str(tmp_path / "study-owner" / "analysis"))
    assert not (tmp_path / "study" / "owner").exists()


def test_a_mapping_inside_the_study_folder_is_refused(tmp_path):
    manifest = make_manifest(tmp_path, n_cases=1)
    with pytest.raises(VbmdError, match="inside the study folder, which raters get"):
        create_study(manifest, tmp_path / "study", mapping_path=tmp_path / "study" / "owner" / "mapping.json")
    assert not (tmp_path / "study").exists()


# -- item 13 ----------------------------------------------------------------------------------------------
def test_the_mapping_never_overwrites_an_input(tmp_path, capsys):
    """`--mapping CONTOUR` replaced that contour with JSON."""
    manifest = make_manifest(tmp_path, n_cases=1)
    contour = sorted((tmp_path / "inputs").glob("*_expert_contour.nii.gz"))[0]
    before = contour.read_bytes(), manifest.read_bytes()
    for target in (contour, manifest):
        code, _, err = run_cli(capsys, "study", "create", manifest, "-o", tmp_path / "study", "--mapping", target)
        assert code == 2 and "refusing to overwrite an input file" in err
    existing = tmp_path / "notes.json"
    existing.write_text("{}")
    code, _, err = run_cli(capsys, "study", "create", manifest, "-o", tmp_path / "study", "--mapping", existing)
    assert code == 2 and "already exists" in err and existing.read_text() == "{}"
    assert (contour.read_bytes(), manifest.read_bytes()) == before and not (tmp_path / "study").exists()


# -- item 12 ----------------------------------------------------------------------------------------------
def test_a_manifests_row_and_file_problems_come_in_one_pass(tmp_path):
    scan, a, b = make_case_files(tmp_path / "in", "good")
    manifest = tmp_path / "m.csv"
    manifest.write_text("case_id,scan,contour_a,source_a,contour_b,source_b\n"
                        f"c1,{scan},{a},expert,{b},expert\n"  # a row problem
                        f"c2,{scan},{tmp_path}/missing.nii.gz,expert,{b},network\n")  # a file problem
    with pytest.raises(VbmdError) as info:
        create_study(manifest, tmp_path / "study")
    text = str(info.value)
    assert "2 problems" in text and "both contours have the source 'expert'" in text and "no such file" in text


# -- item 10 ----------------------------------------------------------------------------------------------
@pytest.fixture
def answered(tmp_path):
    manifest = make_manifest(tmp_path, n_cases=2)
    study = create_study(manifest, tmp_path / "study")
    session = RatingSession(study, "Ann")
    session.answer("contour_1")
    session.next()
    session.answer("equal")
    return study


@pytest.mark.parametrize("damage, words", [
    (lambda r: r.update(choise=r.pop("choice")), "no choice"),
    (lambda r: r.update(chosen_contour_id="deadbeef0000"), "is not the one shown as"),
    (lambda r: r.update(choice="contour_3"), "choice 'contour_3' is none of"),
    (lambda r: r.update(case_id="case99"), "case 'case99' is not in the study"),
    (lambda r: r["shown"][0].update(contour_id="0123456789ab"), "shown contour ids are not case"),
    (lambda r: r.pop("study_id"), "no study_id"),
    (lambda r: r.update(time_spent_s="slow"), "time_spent_s"),
])
def test_wrong_but_valid_answers_are_named_per_file(answered, capsys, damage, words):
    path = next((answered.folder / "answers").glob("*.jsonl"))
    records = [json.loads(line) for line in path.read_text().splitlines()]
    damage(records[0])
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    code, _, err = run_cli(capsys, "study", "analyze", answered.folder)
    assert code == 2 and "internal error" not in err
    lines = err.splitlines()
    assert "1 answer file is not what a rating session writes" in lines[0]
    assert len(lines) == 2 and lines[1].startswith(f"  answers/{path.name}: answer 1: ") and words in lines[1]


def test_a_folder_named_jsonl_is_named_not_read(answered, capsys):
    (answered.folder / "answers" / "zz.jsonl").mkdir()
    code, _, err = run_cli(capsys, "study", "analyze", answered.folder)
    assert code == 2 and "answers/zz.jsonl: is a folder, not a regular file" in err
