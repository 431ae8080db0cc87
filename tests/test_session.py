"""The case session engine (no napari): the mask history and its audit trail, staged progress, one
run from scan to export, and the review flags computed where the segmentation looked."""
from __future__ import annotations

import json

import numpy as np
import pytest

from _segmentation_synthetic import synthetic_mcp
from napari_vbmd.correction import smooth_contour
from napari_vbmd.errors import CancelledError, VbmdError
from napari_vbmd.export import ExportExistsError
from napari_vbmd.io import read_mask, read_scan, write_image
from napari_vbmd.review import flag_slices
from napari_vbmd.segmentation.pipeline import BONE_UNCHECKED
from napari_vbmd.session import (
    RUN_STAGES,
    CaseSession,
    MaskHistory,
    ModelCache,
    RunSettings,
    StagedProgress,
    mask_sha256,
    plural,
    run_case,
)


def _tube(n=6, r=8, size=40):
    y, x = np.ogrid[:size, :size]
    return np.stack([(y - size // 2) ** 2 + (x - size // 2) ** 2 <= r**2] * n).astype(np.uint8)


def test_history_tells_undo_and_redo_from_edits():
    model = _tube()
    history = MaskHistory(model, model="classical")
    painted = model.copy()
    painted[2, 0:3, 0:3] = 1  # 9 voxels
    smoothed = smooth_contour(painted, 2)
    history.record("paint stroke", painted, "ann")
    history.record("smooth contour", smoothed, "ann")
    assert [(op["operation"], op["slices"], op["added"]) for op in history.operations] == [
        ("paint stroke", [2], 9), ("smooth contour", [2], int((smoothed & ~painted).sum()))]
    # napari's undo brings the mask back to the paint stroke: the reverse of the last edit
    undo = history.observe(painted, "ann")
    assert undo["kind"] == "undo" and undo["operation"] == "undo smooth contour" and undo["refers_to"] == 1
    assert history.operations[1]["undone"] and [op["operation"] for op in history.edits] == ["paint stroke"]
    redo = history.observe(smoothed, "ann")
    assert redo["kind"] == "redo" and not history.operations[1]["undone"] and len(history.edits) == 2
    history.observe(painted)
    history.observe(model)  # both undone: the mask is the model's again
    assert not history.corrected and history.edits == [] and history.corrected_by is None
    assert history.observe(model) is None  # no change, no entry
    # a change that is neither the reverse of the last edit nor a redo is an edit made elsewhere
    other = model.copy()
    other[0] = 0
    entry = history.observe(other, "bob")
    assert entry["kind"] == "edit" and entry["operation"] == "change outside the tools" and entry["slices"] == [0]
    assert history.observe(painted) is not None and history.operations[-1]["kind"] == "edit"  # not a redo
    provenance = history.provenance()
    assert provenance["n_edits"] == 2 and provenance["corrected_by"] == "bob"  # the last one who gave a name
    assert json.dumps(provenance)  # JSON-ready


def test_history_keeps_a_corrected_version_when_segmented_again():
    model = _tube()
    history = MaskHistory(model, model="m1")
    assert history.supersede(model, "m2") is None  # nothing corrected: nothing to keep
    edited = model.copy()
    edited[1] = 0
    history.record("erase stroke", edited, "ann")
    kept = history.supersede(_tube(r=7), "m3")
    assert kept["model"] == "m2" and kept["corrected_by"] == "ann" and kept["voxels_removed"] == int(model[1].sum())
    assert kept["mask_sha256"] == mask_sha256(edited) and kept["operations"][0]["operation"] == "erase stroke"
    assert history.model == "m3" and history.operations == [] and not history.corrected
    assert np.array_equal(history.earlier_versions[0]["mask"], edited)
    listed = history.provenance()["earlier_versions"]
    assert listed[0]["mask_sha256"] == kept["mask_sha256"] and "mask" not in listed[0]


def test_staged_progress_names_stages_and_counts_within_them():
    seen = []
    stages = StagedProgress([("a", 1), ("b", 2), ("c", 1)], lambda *r: seen.append(r))
    stages.stage("a")
    stages.stage("b", "starting")
    stages.within(1, 4, "batch")
    stages.within(4, 4, "batch")
    stages.stage("c")
    assert [m for _, _, m in seen] == ["step 1 of 3: a", "step 2 of 3: b: starting", "step 2 of 3: b: batch (1 of 4)",
                                       "step 2 of 3: b: batch (4 of 4)", "step 3 of 3: c"]
    assert [s for s, _, _ in seen] == [0, 250, 375, 750, 750] and {t for _, t, _ in seen} == {1000}
    with pytest.raises(ValueError):
        stages.stage("a")


def test_run_settings_build_the_segmentation_settings():
    from napari_vbmd.segmentation.settings import SegmentSettings

    settings = RunSettings(model="classical", hand="left", slice_range=(2, 5)).segment_settings()
    assert isinstance(settings, SegmentSettings)
    assert settings.hand == "left" and settings.slice_range == (2, 5) and settings.keep_probability
    with pytest.raises(VbmdError, match="threads"):
        RunSettings(threads=0).segment_settings()
    assert plural(1, "slice") == "1 slice" and plural(4, "slice") == "4 slices"


@pytest.fixture(scope="module")
def synthetic_case(tmp_path_factory):
    folder = tmp_path_factory.mktemp("session")
    scan, truth = synthetic_mcp(shape=(16, 64, 96), spacing=0.2, mc2_center_x=32, head_slice=12)
    path = write_image(folder / "syn1.aim", scan)
    messages = []
    run = run_case(lambda: read_scan(path), RunSettings(model="classical", device="cpu"), ModelCache(),
                   progress=lambda step, total, message: messages.append((step, total, message)))
    return run, messages, folder


def test_a_run_reports_its_stages_and_the_session_holds_the_case(synthetic_case, tmp_path):
    run, messages, folder = synthetic_case
    names = [name for name, _ in RUN_STAGES]
    assert [m.split(": ")[0] for _, _, m in messages][0] == "step 1 of 6"
    assert messages[-1][2] == f"step 6 of 6: {names[-1]}" and all(t == 1000 for _, t, _ in messages)
    assert [s for s, _, _ in messages] == sorted(s for s, _, _ in messages) and messages[-1][0] < 1000
    assert not any("done" in m for _, _, m in messages)  # the front end says done, once it shows the result
    # the flags are the engine's, on the segmentation's crop, numbered in the scan
    box = run.segmentation.box
    direct = flag_slices(np.asarray(run.segmentation.mask.data)[box.slices], probability=run.segmentation.probability,
                         density=run.scan.density()[box.slices], threshold=run.segmentation.threshold,
                         spacing=run.scan.spacing)
    assert [f.slice_index for f in run.flags] == [f.slice_index + box.z0 for f in direct]

    session = CaseSession()
    assert session.adopt(run) is None and session.case == "syn1" and session.active
    assert session.hand_words() == "hand: right (from the file's header)"
    assert session.run_words().endswith(f"{plural(len(run.flags), 'slice')} flagged for review.")
    assert ": classical on cpu; " in session.run_words()  # no network, so no runtime to name
    session.segmentation.runtime = "onnxruntime 1.32.0"  # a network's run names what ran it
    try:
        assert ": classical on cpu (onnxruntime 1.32.0); " in session.run_words()
        assert dict(session.results_rows())["Device"] == "cpu (onnxruntime 1.32.0)"
    finally:
        session.segmentation.runtime = ""
    assert "Joint" not in dict(session.results_rows()) and session.joint_words() == ""
    header = session.segmentation.mask.header.setdefault("segmentation", {})
    header["joint_cut"] = {"slice": 12, "kept": "higher", "removed_voxels": 345}
    try:  # a mask parted from the phalanx says so where the results are read
        assert dict(session.results_rows())["Joint"] == ("parted from the proximal phalanx at slice 12 "
                                                         "(345 voxels below it removed); check that they were "
                                                         "the phalanx, not MC2")
        header["joint_cut"] = {"slice": 13, "kept": "lower", "removed_voxels": 520, "by": "joint space",
                               "beside": False, "other_slices": [14, 40]}  # past MC2's tip: not only the phalanx
        assert dict(session.results_rows())["Joint"] == ("parted from another bone across the joint (the proximal "
                                                         "phalanx, or a neighbour's head) at slice 13 (520 voxels "
                                                         "above it removed); check that they were not MC2's")
        header["joint_cut"] = {"slice": 14, "kept": "higher", "removed_voxels": 210, "by": "joint space",
                               "beside": True, "other_slices": [14, 30]}  # a piece beside MC2, not past its tip
        assert dict(session.results_rows())["Joint"] == ("a piece of another bone beside MC2 removed (210 voxels "
                                                         "about slices 14-30); check that it was not MC2's")
    finally:
        header["joint_cut"] = None
    assert "MC2" not in dict(session.results_rows())  # a crop: nothing to say about the bone check
    header["bone_unchecked"] = BONE_UNCHECKED
    try:  # a whole-hand field whose MC2 the image could not locate says its mask was not checked
        assert dict(session.results_rows())["MC2"].startswith("not checked to lie on MC2")
    finally:
        del header["bone_unchecked"]
    mask = session.history.original.copy()
    z = run.result.first_slice + 3
    ys, xs = np.nonzero(mask[z])
    row = int(np.median(ys))
    spur = mask.copy()
    spur[z, row, xs[ys == row].max() + 1:xs[ys == row].max() + 4] = 1  # a one-pixel spur, as a slip of the brush
    session.record("paint stroke", spur, "ann")
    after = session.apply_tool("smooth contour", spur, z)
    session.record("smooth contour", after, "ann")
    assert session.needs_measuring(after)
    session.accept(*session.measure(after))
    assert session.result.n_voxels == int(after.sum()) and session.correction_words().startswith("Correction: +")
    with pytest.raises(VbmdError, match="unknown correction"):
        session.apply_tool("sharpen", mask, z)

    out = folder / "vbmd-export"
    written = session.export(out, "syn1", after, reviewer="ann", make_folder=True)
    report = json.loads(written["report_json"].read_text())
    paint, smooth = report["mask_provenance"]["operations"]
    assert (paint["operation"], paint["slices"], paint["added"]) == ("paint stroke", [z], 3)
    assert (smooth["operation"], smooth["slices"], smooth["by"]) == ("smooth contour", [z], "ann")
    assert smooth["added"] + smooth["removed"] == int((after != spur).sum()) > 0
    assert np.array_equal(read_mask(written["mask_aim"]).data != 0, after != 0)
    with pytest.raises(ExportExistsError):
        session.export(out, "syn1", after)

    # segmented again over the correction: the corrected version stays on record and in the report
    kept = session.adopt(run)
    assert kept is not None and kept["operations"][1]["operation"] == "smooth contour"
    again = session.export(out, "syn1", session.history.original, overwrite=True)
    earlier = json.loads(again["report_json"].read_text())["mask_provenance"]["earlier_versions"]
    assert earlier[0]["mask_sha256"] == mask_sha256(after)


def test_a_cancelled_run_stops_between_stages(synthetic_case):
    run, _, _ = synthetic_case
    with pytest.raises(CancelledError):
        run_case(run.scan, RunSettings(model="classical", device="cpu"), cancel=lambda: True)
