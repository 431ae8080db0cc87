"""The model's mask in the Segment & measure widget, in a real napari viewer (Xvfb). Refused: a broken outline and a
mask beyond the joint (out of both ends of the scan, or across a joint space): the engine's one line as a
notification and on the status line, the refused mask shown to correct but not measured and not exported, the Hand
control left as chosen (the model's doing, not the hand's), and Run ready again; measured and exported once the
person has corrected it. Parted: a mask carried across a joint space inside the pipeline, measured, the desk
saying where."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _hand_phantoms import carried_into_the_phalanx, carry_into_the_phalanx_inside_the_pipeline, crop
from napari_vbmd.io import write_image

pytestmark = pytest.mark.gui


def _desk(make_napari_viewer, qtbot, monkeypatch, tmp_path):
    import napari_vbmd.widgets._worker as worker

    path = write_image(tmp_path / "crop_L.aim", crop(seed=9, hand="left").image)
    viewer = make_napari_viewer()
    viewer.open(str(path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = "classical"
    widget.run_tab.device.value = "cpu"
    errors = []
    monkeypatch.setattr(worker, "show_error", errors.append)
    hand = widget.run_tab.hand
    qtbot.waitUntil(lambda: hand.auto is not None and not widget.run_tab.hand_runner.busy, timeout=30000)
    hand.choice.value = "left"
    return viewer, widget, errors


def _run(qtbot, widget):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=120000)


def _refused_then_corrected(qtbot, monkeypatch, viewer, widget, errors, spoil, expected: str, tmp_path,
                            erase_lower: bool = False):
    import napari_vbmd.segmentation.pipeline as pipeline
    import napari_vbmd.widgets.workflow as workflow
    from napari_vbmd.measure import measure_vbmd

    n_layers = len(viewer.layers)
    segment_field = pipeline._segment_field
    made = {}

    def spoiled(scan, *args, **kwargs):
        result = segment_field(scan, *args, **kwargs)
        made["mask"] = result.mask.data.astype(bool)
        mask = spoil(made["mask"].copy())
        return dataclasses.replace(result, mask=result.mask.with_data(mask.astype(np.uint8)))

    warnings = []
    monkeypatch.setattr(workflow, "show_warning", warnings.append)
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_segment_field", spoiled)
        _run(qtbot, widget)
    [line] = warnings  # one line, the file named: the refused mask is shown to correct, not measured
    assert errors == [] and line.count("\n") == 0 and line.startswith("crop_L.aim: the model's mask was refused: ")
    assert expected in line and "It is not measured until you correct it" in line
    status = widget.status_label.text()
    assert "Refused: " in status and expected in status and "measured once corrected" in status
    assert len(viewer.layers) == n_layers + 1 and widget.labels_layer is not None and widget.run_button.isEnabled()
    assert widget.result is None and "refused, not measured" in widget.summary_label.text()
    assert "Not measured" in widget.review_tab.results_label.text()
    hand = widget.run_tab.hand
    assert not hand.marked and hand.source.value == "last run: left (you chose)"  # the model's doing, not the hand's

    out = tmp_path / "export"
    widget.export_tab.folder.line_edit.value = str(out)
    widget.export()
    assert len(errors) == 1 and "not measured until you correct it" in errors[0] and not out.exists()

    if erase_lower:  # the slices carried across the joint, erased with one tool from MC2's first slice
        widget.go_to_slice(int(np.flatnonzero(made["mask"].any(axis=(1, 2)))[0]))
        widget.correct("erase lower slices")
        assert widget.session.history.operations[-1]["operation"] == "erase lower slices"
    else:  # the person's correction, painted: back to MC2 alone
        refused = np.asarray(widget.labels_layer.data)
        indices = np.nonzero((refused != 0) != made["mask"])
        widget.mask.write("paint", indices, made["mask"][indices].astype(np.uint8))
    qtbot.waitUntil(lambda: widget.result is not None and not widget.measuring, timeout=60000)
    rows = dict(widget.results_table())
    assert rows["Refused"].startswith("the model's mask: ") and "Check" not in rows
    assert widget.result.d100_mg_ha_cm3 == pytest.approx(
        measure_vbmd(widget.session.scan, made["mask"].astype(np.uint8)).d100_mg_ha_cm3)
    assert "D100" in widget.summary_label.text() and "corrected: +" in widget.summary_label.text()
    written = widget.export()
    assert len(errors) == 1 and written and out.is_dir()


def test_a_broken_classical_mask_is_refused_shown_to_correct_and_measured_once_corrected(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    def combed(mask):  # the classical method's outline, combed by streaks on every slice
        mask[:, :, ::2] = False
        return mask

    viewer, widget, errors = _desk(make_napari_viewer, qtbot, monkeypatch, tmp_path)
    _refused_then_corrected(qtbot, monkeypatch, viewer, widget, errors, combed, "the mask's sections are broken on",
                            tmp_path)


def test_a_mask_beyond_the_joint_is_refused_to_correct_without_blaming_the_hand(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    def beyond(mask):  # carried on to the scan's first slice, as a network carries it into the phalanx
        present = np.flatnonzero(mask.any(axis=(1, 2)))
        mask[:present[0]] = mask[present[-1]]
        return mask

    viewer, widget, errors = _desk(make_napari_viewer, qtbot, monkeypatch, tmp_path)
    _refused_then_corrected(qtbot, monkeypatch, viewer, widget, errors, beyond, "runs out of the scan at both ends",
                            tmp_path, erase_lower=True)


def test_a_mask_across_a_joint_space_is_refused_to_correct_without_blaming_the_hand(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    density = crop(seed=9, hand="left").image.density()

    def across(mask):  # carried five slices into the phalanx, short of the scan's first slice
        return carried_into_the_phalanx(mask, density)

    viewer, widget, errors = _desk(make_napari_viewer, qtbot, monkeypatch, tmp_path)
    _refused_then_corrected(qtbot, monkeypatch, viewer, widget, errors, across, "two bones parted by a joint space",
                            tmp_path, erase_lower=True)


def test_a_mask_parted_at_a_joint_space_is_measured_and_the_desk_says_where(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from napari_vbmd.review import REASON_JOINT

    carry_into_the_phalanx_inside_the_pipeline(monkeypatch)
    viewer, widget, errors = _desk(make_napari_viewer, qtbot, monkeypatch, tmp_path)
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert errors == [] and widget.labels_layer is not None and len(viewer.layers) == n_layers + 1
    cut = widget.session.segmentation.joint_cut
    assert cut["by"] == "joint space" and not widget.labels_layer.data[:cut["slice"]].any()
    joint = dict(widget.session.results_rows())["Joint"]
    assert joint.startswith("parted from another bone across the joint (the proximal phalanx, or a neighbour's "
                            f"head) at slice {cut['slice']} (") and "below it" in joint
    [flag] = [f for f in widget.session.flags if REASON_JOINT in f.reasons]
    assert (f"parted from another bone across the joint (the proximal phalanx, or a neighbour's head) at slice "
            f"{cut['slice']} and the bone below it removed: check that it was not MC2's") in flag.describe()
    assert flag.slice_index == cut["slice"]  # the reviewer is taken to the head's tip, where the cut was made
    assert "hand: left (you chose)" in widget.status_label.text()
