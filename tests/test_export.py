"""Export of a reviewed case, reading it back, and the training pair `vbmd train` reads."""
from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from _segmentation_synthetic import synthetic_mcp
from napari_vbmd.correction import correction_stats
from napari_vbmd.errors import VbmdError
from napari_vbmd.export import (
    EXPORT_FOLDER,
    ExportExistsError,
    NotOurFileError,
    default_export_folder,
    export_case,
    save_training_pair,
)
from napari_vbmd.session import MaskHistory
from napari_vbmd.io import read_mask, read_scan, write_image, write_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.review import ReviewStore
from napari_vbmd.segmentation.datasets import find_pairs, load_pair


@pytest.fixture()
def case(tmp_path):
    scan, truth = synthetic_mcp(shape=(12, 48, 64), spacing=0.2, mc2_center_x=24, head_slice=9)
    scan_dir = tmp_path / "scans"
    scan_dir.mkdir()
    path = write_image(scan_dir / "c1.aim", scan)
    image = read_scan(path)
    original = truth.astype(np.uint8)
    final = original.copy()
    final[3, 10:14, 10:14] = 1  # the reviewer's paint
    return image, original, final


def _export(tmp_path, image, original, final, **kw):
    out = tmp_path / "export"
    out.mkdir(exist_ok=True)
    result = measure_vbmd(image, image.with_data(final, kind="mask", unit="unknown"))
    before = measure_vbmd(image, image.with_data(original, kind="mask", unit="unknown")).d100_mg_ha_cm3
    stats = correction_stats(original, final, before, result.d100_mg_ha_cm3)
    versions = MaskHistory(original, model="classical")
    versions.record("paint stroke", final, "ann")
    review = ReviewStore(case="c1", scan=image.source)
    review.mark_slice(3, "flagged", "missed cortex", "ann")
    review.mark_case("reviewed", reviewer="ann")
    written = export_case(out, "c1", image, final, result, original_mask=original, model="classical", device="cpu",
                          review=review, reviewer="ann", stats=stats, provenance=versions.provenance(), seconds=1.5,
                          **kw)
    return out, written, result, stats


def test_export_writes_masks_on_the_scan_grid_and_a_report(tmp_path, case):
    image, original, final = case
    out, written, result, stats = _export(tmp_path, image, original, final, formats=("aim", "nifti", "tiff"))
    assert {p.name for p in written.values()} == {
        "c1_mask.aim", "c1_mask.nii.gz", "c1_mask.tif", "c1_model_mask.aim", "c1_review.json", "c1_report.json",
        "c1_report.csv"}
    for key in ("mask_aim", "mask_nifti", "mask_tiff"):
        back = read_mask(written[key])
        assert back.same_grid(image), key
        assert np.array_equal(back.data != 0, final != 0), key
    import py_aimio

    raw, _ = py_aimio.read_aim(str(written["mask_aim"]))
    assert np.unique(np.asarray(raw)).tolist() == [0, 127]  # char 127, as the scanner wants
    aim = read_scan(written["mask_aim"])
    assert aim.kind == "mask"
    assert "napari-vbmd" in aim.header["processing_log"] or "napari_vbmd" in aim.header["processing_log"]
    assert np.array_equal(read_mask(written["model_mask"]).data != 0, original != 0)

    report = json.loads(written["report_json"].read_text())
    assert report["case"] == "c1" and report["scan_file"] == image.source
    assert report["scan_sha256"] == hashlib.sha256(open(image.source, "rb").read()).hexdigest()
    assert report["model"] == "classical" and report["review_status"] == "reviewed" and report["reviewer"] == "ann"
    assert report["slices_flagged"] == 1
    assert report["vbmd"]["d100_mg_ha_cm3"] == pytest.approx(result.d100_mg_ha_cm3)
    assert report["correction"]["voxels_added"] == stats.voxels_added == int((final & ~original).sum())
    assert report["mask_provenance"]["corrected_by"] == "ann"
    # the exported mask, measured again, gives the reported figures
    again = measure_vbmd(image, read_mask(written["mask_aim"], like=image))
    assert again.d100_mg_ha_cm3 == pytest.approx(report["vbmd"]["d100_mg_ha_cm3"], rel=1e-9)
    assert again.n_voxels == report["vbmd"]["n_voxels"]

    rows = list(csv.DictReader(open(written["report_csv"])))
    assert len(rows) == 1
    assert float(rows[0]["d100_mg_ha_cm3"]) == pytest.approx(result.d100_mg_ha_cm3)
    assert rows[0]["mask_file"] == "c1_mask.aim" and rows[0]["voxels_added"] == str(stats.voxels_added)
    assert ReviewStore.load(written["review"]).slice_status(3) == "flagged"


def test_an_earlier_export_is_not_overwritten_unless_confirmed(tmp_path, case):
    image, original, final = case
    out, written, _, _ = _export(tmp_path, image, original, final)
    before = written["mask_aim"].read_bytes()
    with pytest.raises(ExportExistsError) as caught:
        _export(tmp_path, image, original, np.zeros_like(final) + original)
    assert written["mask_aim"] in caught.value.paths
    assert written["mask_aim"].read_bytes() == before
    _, again, _, _ = _export(tmp_path, image, original, original, overwrite=True)
    assert np.array_equal(read_mask(again["mask_aim"]).data != 0, original != 0)


def test_the_scan_is_never_overwritten(tmp_path, case):
    image, original, final = case
    scan_copy = tmp_path / "export"
    scan_copy.mkdir()
    source = write_image(scan_copy / "c1_mask.aim", image)  # a scan named like the export's mask
    image = read_scan(source)
    content = source.read_bytes()
    result = measure_vbmd(image, image.with_data(final, kind="mask", unit="unknown"))
    with pytest.raises(VbmdError, match="input file"):
        export_case(scan_copy, "c1", image, final, result, overwrite=True)
    assert source.read_bytes() == content
    with pytest.raises(VbmdError, match="cannot be a file name"):
        export_case(scan_copy, "../c1", image, final, result)


def test_training_pair_is_found_by_the_training_data_reader(tmp_path, case):
    image, original, final = case
    train = tmp_path / "train"
    train.mkdir()
    written = save_training_pair(train, "p7_L", image, final, patient="p7", provenance={"corrected_by": "ann"})
    pairs = find_pairs(train)
    assert [(p.case, p.patient, p.image.name, p.mask.name) for p in pairs] == [("p7_L", "p7", "p7_L.aim", "p7_L_mask.aim")]
    back_image, inside = load_pair(pairs[0])
    assert back_image.same_grid(image)
    assert np.array_equal(back_image.density(), image.density())
    assert np.array_equal(inside, final != 0)
    with pytest.raises(ExportExistsError):
        save_training_pair(train, "p7_L", image, final)
    assert json.loads(written["sidecar"].read_text())["mask_provenance"] == {"corrected_by": "ann"}


def test_export_goes_to_a_folder_of_its_own_beside_the_scan(case):
    image, _, _ = case
    assert default_export_folder(image.source) == Path(image.source).parent / EXPORT_FOLDER
    assert default_export_folder(None) is None


def test_a_file_this_tool_did_not_write_is_never_replaced(tmp_path, case):
    """A truth mask beside the scan, named like the export's mask: refused, even when asked to overwrite."""
    image, original, final = case
    scan_dir = Path(image.source).parent
    truth = write_mask(scan_dir / "c1_mask.aim", image.with_data(original, kind="mask", unit="unknown"), parent=image)
    content = truth.read_bytes()
    result = measure_vbmd(image, image.with_data(final, kind="mask", unit="unknown"))
    for overwrite in (False, True):
        with pytest.raises(NotOurFileError, match="c1_mask.aim is not napari-vbmd's own export"):
            export_case(scan_dir, "c1", image, final, result, original_mask=original, overwrite=overwrite)
    assert truth.read_bytes() == content
    assert sorted(p.name for p in scan_dir.iterdir()) == ["c1.aim", "c1_mask.aim"]  # nothing else written


def test_own_exports_are_known_by_their_report(tmp_path, case):
    image, original, final = case
    out, written, _, _ = _export(tmp_path, image, original, final)
    report = json.loads(written["report_json"].read_text())
    assert report["complete"] and set(report["file_sha256"]) == {p.name for k, p in written.items() if k != "report_json"}
    # ours, unchanged: replaced on request
    _export(tmp_path, image, original, final, overwrite=True)
    # ours, but changed since (re-saved by another tool): no longer ours
    written["mask_aim"].write_bytes(written["mask_aim"].read_bytes() + b"\0")
    with pytest.raises(NotOurFileError, match="c1_mask.aim"):
        _export(tmp_path, image, original, final, overwrite=True)
    # an export interrupted after its first report (no hashes yet) is still known as ours
    written["mask_aim"].unlink()
    report = json.loads(written["report_json"].read_text())
    report.pop("file_sha256")
    report["complete"] = False
    written["report_json"].write_text(json.dumps(report))
    _export(tmp_path, image, original, final, overwrite=True)


def test_a_file_open_in_the_viewer_is_protected(tmp_path, case):
    image, original, final = case
    out = tmp_path / "export"
    out.mkdir()
    reference = write_mask(out / "c1_model_mask.aim", image.with_data(original, kind="mask", unit="unknown"))
    result = measure_vbmd(image, image.with_data(final, kind="mask", unit="unknown"))
    with pytest.raises(VbmdError, match="input file"):
        export_case(out, "c1", image, final, result, original_mask=original, overwrite=True, protect=[reference])
    assert [p.name for p in out.iterdir()] == ["c1_model_mask.aim"]


def test_the_report_says_which_hand_and_where_that_came_from(tmp_path, case):
    image, original, final = case
    why = "whole-hand field: radial-ulnar: head sizes, thumb; dorsal-palmar: soft tissue"
    out, written, _, _ = _export(tmp_path, image, original, final, hand="left", hand_source="image",
                                 hand_confidence=0.997, hand_reason=why)
    report = json.loads(written["report_json"].read_text())
    assert (report["hand"], report["hand_source"], report["hand_confidence"]) == ("left", "image", 0.997)
    assert report["hand_reason"] == why
    row = next(csv.DictReader(open(written["report_csv"])))
    assert (row["hand"], row["hand_source"], row["hand_confidence"], row["hand_reason"]) == ("left", "image", "0.997", why)
    # and what the values meant and how large the voxels were, and who said so
    assert report["calibration"] == row["calibration"] and report["calibration"].endswith("(file)")
    assert row["voxel_size"] == f"{' x '.join(f'{s:g}' for s in image.spacing)} mm (file)"
    # not given: the scan header's hand, said to come from the header
    (tmp_path / "b").mkdir()
    out, written, _, _ = _export(tmp_path / "b", image, original, final)
    report = json.loads(written["report_json"].read_text())
    assert (report["hand"], report["hand_source"], report["hand_confidence"]) == (image.hand, "header", 1.0)
    assert report["hand_reason"] == f"the file's header says {image.hand}"
