"""The hand side in the Segment & measure widget, in a real napari viewer (Xvfb), on headerless
phantoms (tests/_hand_phantoms.py, 0.25 mm voxels): a crop of MC2 and MC3 asks for the hand (the
control marked, a notification, Run refused) and, once it is given, the chosen hand with source
"argument" reaches the results, the clipboard and the report; a whole-hand field shows the hand
found in the image, and a hand it contradicts is refused with nothing added."""
from __future__ import annotations

import csv
import dataclasses
import json

import numpy as np
import pytest

from _hand_phantoms import crop, whole_hand
from napari_vbmd.io import write_image
from napari_vbmd.review import REASON_HAND, SliceFlag

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def hand_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hand_gui")
    whole = whole_hand(seed=9, hand="left").image
    return {"crop": write_image(folder / "crop_L.aim", crop(seed=9, hand="left").image),
            "whole": write_image(folder / "whole_L.aim", whole),
            "wrong_header": write_image(folder / "whole_L_header_R.aim", dataclasses.replace(whole, hand="right"))}


def _open(make_napari_viewer, path, monkeypatch):
    import napari_vbmd.widgets._worker as worker
    import napari_vbmd.widgets.workflow_run as workflow_run

    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = "classical"
    widget.run_tab.device.value = "cpu"
    shown = {"errors": [], "warnings": []}
    monkeypatch.setattr(worker, "show_error", shown["errors"].append)
    monkeypatch.setattr(workflow_run, "show_warning", shown["warnings"].append)
    return viewer, layer, widget, shown


def _looked(qtbot, widget):
    qtbot.waitUntil(lambda: widget.run_tab.hand.auto is not None and not widget.run_tab.hand_runner.busy, timeout=30000)
    return widget.run_tab.hand


def _run(qtbot, widget):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)


def test_a_headerless_crop_asks_for_the_hand_and_the_chosen_hand_reaches_the_report(
        make_napari_viewer, hand_files, qtbot, monkeypatch, tmp_path):
    from qtpy.QtWidgets import QApplication

    viewer, layer, widget, shown = _open(make_napari_viewer, hand_files["crop"], monkeypatch)
    hand = _looked(qtbot, widget)
    assert not hand.auto.decided and hand.needs_choice() and hand.marked
    assert hand.source.value == "⚠ choose the hand: the image cannot tell (a crop of MC2 and MC3)"
    assert "MC2 and MC3 are alike" in hand.source.tooltip  # the whole reason on hover
    assert shown["warnings"] == ["Choose the hand (left or right) of crop_L.aim before Run: the image cannot tell "
                                 "(a crop of MC2 and MC3)"]
    assert "Choose left or right" in widget.status_label.text()

    n_layers = len(viewer.layers)
    _run(qtbot, widget)  # refused at once: nothing runs, nothing is added
    assert shown["errors"][-1] == "Run needs the hand (left or right) of crop_L.aim: the image cannot tell (a crop of MC2 and MC3)"
    assert len(viewer.layers) == n_layers and widget.labels_layer is None and widget.run_button.isEnabled()
    assert "Choose the hand of" in widget.status_label.text()

    # Run pressed before the look has answered: the run resolves the hand itself and refuses the same way
    hand.looking()
    _run(qtbot, widget)
    assert "cannot tell which hand this is" in shown["errors"][-1] and "crop_L.aim" in shown["errors"][-1]
    assert hand.needs_choice() and hand.marked and len(viewer.layers) == n_layers and widget.run_button.isEnabled()

    # a run that ends on another bone: the engine's line as a notification, the Hand line says why, nothing added
    import napari_vbmd.segmentation.pipeline as pipeline
    from napari_vbmd.segmentation.focus import OtherBoneError

    def other_bone(scan, settings, **kwargs):
        raise OtherBoneError("the mask the model made lies on MC3, not on MC2; nothing written", scan.source)

    hand.choice.value = "left"
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", other_bone)
        _run(qtbot, widget)
    assert "lies on MC3, not on MC2" in shown["errors"][-1] and shown["errors"][-1].count("\n") == 0
    assert hand.marked and "Run refused: the mask lay on another bone" in hand.source.value
    assert len(viewer.layers) == n_layers and widget.labels_layer is None and widget.run_button.isEnabled()

    # a mask of MC2 and a neighbour together: the model's doing, not the hand's; the Hand line is not marked
    from napari_vbmd.segmentation.focus import TwoBonesError

    def two_bones(scan, settings, **kwargs):
        raise TwoBonesError("the mask holds two bones side by side on 40 of its 110 slices (MC2 and a neighbour "
                            "taken in together): its density is neither's; nothing written: try another model",
                            scan.source)

    hand.choice.value = "auto"
    hand.choice.value = "left"
    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "run", two_bones)
        _run(qtbot, widget)
    assert "holds two bones side by side" in shown["errors"][-1] and shown["errors"][-1].count("\n") == 0
    assert not hand.marked and hand.source.value == "left (you chose)"
    assert len(viewer.layers) == n_layers and widget.labels_layer is None and widget.run_button.isEnabled()

    hand.choice.value = "auto"
    hand.choice.value = "left"
    assert not hand.marked and hand.source.value == "left (you chose)" and not hand.needs_choice()
    _run(qtbot, widget)
    assert widget.labels_layer is not None and len(viewer.layers) == n_layers + 1
    assert "hand: left (you chose)" in widget.status_label.text()
    assert hand.source.value == "last run: left (you chose)"
    assert (widget.segmentation.hand, widget.segmentation.hand_source) == ("left", "argument")
    assert dict(widget.results_table())["Hand"] == "left (you chose)"
    assert "Hand" in widget.review_tab.results_label.text()
    widget.copy_results()
    assert "Hand\tleft (you chose)" in QApplication.clipboard().text()

    widget.export_tab.folder.line_edit.value = str(tmp_path)
    widget.export()
    report = json.loads((tmp_path / "crop_L_report.json").read_text())
    assert (report["hand"], report["hand_source"], report["hand_confidence"]) == ("left", "argument", 1.0)
    assert report["hand_reason"] == "given as left"
    row = next(csv.DictReader(open(tmp_path / "crop_L_report.csv")))
    assert (row["hand"], row["hand_source"]) == ("left", "argument")


def test_a_whole_hand_field_shows_the_hand_found_in_the_image_and_a_contradicting_hand_is_refused(
        make_napari_viewer, hand_files, qtbot, monkeypatch):
    from qtpy.QtWidgets import QApplication

    viewer, layer, widget, shown = _open(make_napari_viewer, hand_files["whole"], monkeypatch)
    hand = _looked(qtbot, widget)
    assert (hand.auto.hand, hand.auto.source) == ("left", "image") and hand.auto.confidence >= 0.95
    assert hand.source.value == f"auto: left (found in the image, confidence {hand.auto.confidence:.3f})"
    assert not hand.marked and not shown["warnings"] and hand.source.tooltip.startswith("whole-hand field")

    # the user says right; the image shows a left hand: marked before Run, refused by Run, nothing added
    hand.choice.value = "right"
    assert hand.marked and "the image shows left: Run will refuse" in hand.source.value
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert shown["errors"] and "is not the one the image shows" in shown["errors"][-1]
    assert len(viewer.layers) == n_layers and widget.labels_layer is None
    assert widget.run_button.isEnabled() and hand.marked and "Run refused" in hand.source.value

    # auto: the run uses the decision shown (the image is not looked at again) and says where it came from
    import napari_vbmd.segmentation.hand as engine_hand
    import napari_vbmd.segmentation.pipeline as pipeline

    def no_second_look(*args, **kwargs):
        raise AssertionError("the image was looked at again")

    monkeypatch.setattr(engine_hand, "detect_hand", no_second_look)
    monkeypatch.setattr(pipeline, "detect_hand", no_second_look)
    hand.choice.value = "auto"
    assert not hand.marked
    _run(qtbot, widget)
    assert widget.labels_layer is not None, shown["errors"]
    words = f"left (found in the image, confidence {hand.auto.confidence:.3f})"
    assert f"hand: {words}" in widget.status_label.text() and dict(widget.results_table())["Hand"] == words
    assert "Hand: whole-hand field" in widget.review_tab.hand_label.text()
    widget.copy_results()
    assert f"Hand\t{words}" in QApplication.clipboard().text() and "Hand evidence\twhole-hand field" in \
        QApplication.clipboard().text()

    # most slices flagged: the review says "check the hand side", readably, above the figures and in the case line
    z = widget.result.first_slice
    widget.session.flags = [SliceFlag(z, ["area", REASON_HAND], {"area_change": 0.4, "flagged_fraction": 0.8})]
    widget.show_results()
    assert "⚠ check the hand side" in widget.summary_label.text()
    assert "Check the hand side: 80% of the mask's slices are flagged" in widget.review_tab.hand_label.text()
    assert "made for a left hand (found in the image" in widget.review_tab.hand_label.text()
    widget.go_to_slice(z)
    assert "check the hand side: 80% of the mask's slices are flagged" in widget.review_tab.slice_label.text()


def test_a_header_the_whole_hand_field_contradicts_is_marked_before_run_and_refused(
        make_napari_viewer, hand_files, qtbot, monkeypatch):
    viewer, layer, widget, shown = _open(make_napari_viewer, hand_files["wrong_header"], monkeypatch)
    hand = _looked(qtbot, widget)
    assert (hand.auto.hand, hand.auto.source, hand.image.hand) == ("right", "header", "left")
    assert hand.marked and hand.source.value.startswith("⚠ auto: right (from the file's header), but the image "
                                                        "shows left: Run will refuse")
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert "the hand given (right (header)) is not the one the image shows (left (image" in shown["errors"][-1]
    assert len(viewer.layers) == n_layers and widget.labels_layer is None and widget.run_button.isEnabled()
    assert "Run refused: the image shows the other hand" in hand.source.value
    hand.choice.value = "left"  # what the image shows: no longer marked
    assert not hand.marked and hand.source.value.startswith("left (you chose)")


def test_the_hand_is_looked_for_again_when_another_scan_is_chosen(make_napari_viewer, hand_files, qtbot, monkeypatch):
    viewer, crop_layer, widget, shown = _open(make_napari_viewer, hand_files["crop"], monkeypatch)
    hand = _looked(qtbot, widget)
    assert hand.needs_choice()
    [whole_layer] = viewer.open(str(hand_files["whole"]), plugin="napari-vbmd")  # the newest scan is chosen
    assert widget.run_tab.scan_layer() is whole_layer
    qtbot.waitUntil(lambda: hand.auto is not None and hand.auto.decided, timeout=30000)
    assert hand.auto.hand == "left" and not hand.marked
    widget.run_tab.scan.value = crop_layer
    qtbot.waitUntil(lambda: hand.auto is not None and not widget.run_tab.hand_runner.busy, timeout=30000)
    assert hand.needs_choice() and hand.marked
    assert np.asarray(crop_layer.data).ndim == 3 and not shown["errors"]
