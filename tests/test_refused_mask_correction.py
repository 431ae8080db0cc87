"""A mask the pipeline refuses for the model's doing (beyond the joint, two bones, a broken outline) comes to the
case session as a mask to correct by hand: no figures and no export while it is the refused mask; measured once a
person has changed it, with the refusal on record and the same checks run on the corrected mask."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from _hand_phantoms import crop
from napari_vbmd.errors import VbmdError
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.segmentation.focus import BeyondJointError
from napari_vbmd.segmentation.settings import SegmentSettings
from napari_vbmd.session import CaseSession, RunSettings, run_case


@pytest.fixture(scope="module")
def phantom():
    return crop(seed=9, hand="left")


@pytest.fixture
def refused_run(phantom, monkeypatch):
    """The classical method's mask of the crop, carried on to the scan's first slice (as a network carries it into
    the phalanx beyond the joint); (the run, the mask as the model made it)."""
    import napari_vbmd.segmentation.pipeline as pipeline

    segment_field = pipeline._segment_field
    made = {}

    def beyond(scan, *args, **kwargs):
        result = segment_field(scan, *args, **kwargs)
        mask = result.mask.data.astype(bool)
        made["mask"] = mask.copy()
        present = np.flatnonzero(mask.any(axis=(1, 2)))
        mask[:present[0]] = mask[present[-1]]
        return dataclasses.replace(result, mask=result.mask.with_data(mask.astype(np.uint8)))

    monkeypatch.setattr(pipeline, "_segment_field", beyond)
    run = run_case(phantom.image, RunSettings(model="classical", device="cpu", hand="left"))
    return run, made["mask"]


def test_the_pipeline_refuses_and_hands_over_the_refused_mask(phantom, refused_run):
    from napari_vbmd.segmentation.pipeline import run

    _, as_made = refused_run
    with pytest.raises(BeyondJointError) as refused:  # the CLI and batch still refuse (exit 2, nothing written)
        run(phantom.image, SegmentSettings(model="classical", device="cpu", hand="left"))
    assert "runs out of the scan at both ends" in refused.value.reason
    assert "nothing written: try another model" in str(refused.value)
    assert refused.value.refused.mask.data[0].any()  # the mask it refused, carried to the scan's first slice


def test_a_refused_mask_is_not_measured_until_a_person_corrects_it(phantom, refused_run, tmp_path):
    run, as_made = refused_run
    assert run.refusal.startswith("the mask runs out of the scan at both ends") and "nothing written" not in run.refusal
    session = CaseSession()
    session.adopt(run)
    refused = session.history.original.copy()
    assert session.active and session.result is None and session.refusal == run.refusal
    rows = dict(session.results_rows())
    assert rows["Not measured"] == f"the model's mask was refused: {run.refusal}" and "D100 (mg HA/cm³)" not in rows
    assert "Refused: the mask runs out of the scan at both ends" in session.run_words()
    assert session.correction_stats() is None and session.flags  # flags still point at slices to look at
    assert session.refused_profile.slice_index[0] == 0  # where the refused mask runs, to correct it by

    with pytest.raises(VbmdError, match="the model's mask was refused: the mask runs out of the scan at both ends"):
        session.measured(refused)
    out = tmp_path / "export"
    out.mkdir()
    with pytest.raises(VbmdError, match="not measured until you correct it"):
        session.export(out, "c1", refused)
    with pytest.raises(VbmdError, match="not measured until you correct it"):
        session.save_training_pair(out, "c1", refused)
    assert list(out.iterdir()) == []  # nothing half-written

    # half corrected: the carried slices below slice 5 erased, slices 0-4 left: still out of the scan at both ends
    half = refused.copy()
    half[5:np.flatnonzero(as_made.any(axis=(1, 2)))[0]] = 0
    session.record("paint", half, by="ann")
    result = session.measured(half)
    assert result is not None and session.concern.startswith("the mask runs out of the scan at both ends")
    rows = dict(session.results_rows())
    assert rows["Check"].startswith("⚠ the mask as it is: the mask runs out of the scan at both ends")
    assert rows["Refused"].startswith("the model's mask: the mask runs out of the scan at both ends (")
    assert rows["Refused"].endswith("on the last); measured as you corrected it")
    assert "MC2 leaves" not in rows["Refused"]  # the headline only: the whole line is in the status and the report

    fixed = as_made.astype(np.uint8)  # every carried slice erased: the mask as the model made it
    session.record("erase", fixed, by="ann")
    result = session.measured(fixed)
    assert session.concern == "" and "Check" not in dict(session.results_rows())
    assert result.d100_mg_ha_cm3 == pytest.approx(measure_vbmd(phantom.image, fixed).d100_mg_ha_cm3)
    stats = session.correction_stats()
    assert stats.voxels_removed == int(refused.sum() - fixed.sum()) and stats.voxels_added == 0
    assert stats.d100_before == pytest.approx(run.result.d100_mg_ha_cm3)  # the refused mask's, for the record

    written = session.export(out, "c1", fixed, reviewer="ann")
    report = json.loads(written["report_json"].read_text())
    assert report["mask_provenance"]["model_mask_refused"] == run.refusal
    assert report["mask_provenance"]["mask_concern"] is None
    assert report["vbmd"]["d100_mg_ha_cm3"] == pytest.approx(result.d100_mg_ha_cm3)
    [row] = csv.DictReader(written["report_csv"].open())
    assert row["model_mask_refused"] == run.refusal and row["mask_concern"] == ""

    session.observe(refused)  # undone back to the refused mask: no figures again
    assert session.needs_measuring(refused)
    session.accept(*session.measure(refused))
    assert session.result is None and session.concern == run.refusal


def test_a_case_not_refused_is_not_checked_again_after_a_correction(phantom):
    """The checks cost 0.4-1.3 s a mask (benchmarks/bench_refused.py); a mask the pipeline passed is re-measured
    after each correction without them, as before."""
    session = CaseSession()
    session.adopt(run_case(phantom.image, RunSettings(model="classical", device="cpu", hand="left")))
    mask = session.history.original.copy()
    assert session.refusal == "" and session.concern == "" and session.refused_profile is None
    present = np.flatnonzero(mask.any(axis=(1, 2)))
    mask[:present[0]] = mask[present[-1]]  # painted on to the scan's first slice
    session.record("paint", mask, by="ann")
    assert session.measured(mask).n_slices == mask.shape[0] and session.concern == ""
    rows = dict(session.results_rows())
    assert "Check" not in rows and "Refused" not in rows
