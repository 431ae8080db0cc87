"""The Segment & measure widget in a real napari viewer (Xvfb), opened as napari opens it (through the
plugin manifest, so napari's public-only proxy sits between it and the viewer): segment a phantom,
cancel a run, run again, review, correct (and undo), export; re-run over corrections; delete the
case's layers; the viewer's keys; the layout at 1280 x 800 and 1600 x 1000."""
from __future__ import annotations

import json
import warnings

import numpy as np
import pytest

from _site_checkpoint import site_checkpoint
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
from napari_vbmd.review import ReviewStore
from napari_vbmd.session import FlagContext

pytestmark = pytest.mark.gui


@pytest.fixture(scope="session")
def phantom_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workflow_phantom")
    phantom = generate_phantom(PhantomSpec(seed=3, n_slices=24, spacing_mm=0.25))
    return write_phantom(phantom, folder, "ph3")  # ph3.aim and its truth ph3_mask.aim beside it


@pytest.fixture(scope="session")
def phantom_file(phantom_files):
    return phantom_files["image"]


def open_widget(viewer):
    dock, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = "classical"
    widget.run_tab.device.value = "cpu"
    return widget


@pytest.fixture()
def widget_and_viewer(make_napari_viewer, phantom_file, qtbot):
    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_file), plugin="napari-vbmd")
    return open_widget(viewer), viewer, layer


def _run(qtbot, widget, timeout=60000):
    qtbot.mouseClick(widget.run_button, _left())
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def _left():
    from qtpy.QtCore import Qt

    return Qt.MouseButton.LeftButton


def _settled(qtbot, widget):
    qtbot.waitUntil(lambda: not widget.measuring, timeout=10000)


def _errors(monkeypatch):
    import napari_vbmd.widgets._worker as worker

    shown = []
    monkeypatch.setattr(worker, "show_error", shown.append)
    return shown


def test_segment_cancel_rerun_review_correct_undo_export(widget_and_viewer, qtbot, monkeypatch):
    widget, viewer, image_layer = widget_and_viewer
    scan = read_scan(image_layer.metadata["vbmd"]["source"])
    n_layers = len(viewer.layers)
    assert type(widget.viewer).__name__ == "PublicOnlyProxy"  # as napari hands it to a plugin

    # cancel: click Run, then Cancel at once; the run stops and leaves no layer behind
    qtbot.mouseClick(widget.run_button, _left())
    assert widget.busy and widget.cancel_button.isEnabled()
    qtbot.mouseClick(widget.cancel_button, _left())
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert len(viewer.layers) == n_layers and widget.labels_layer is None
    assert "Cancelled" in widget.status_label.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    # run for real, watching progress and warnings: stage names, totals, "done" only at the end, no
    # warning (napari turns a private attribute access into a yellow toast)
    reports = []
    widget.runner.progressed.connect(lambda step, total, message: reports.append((step, total, message)))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _run(qtbot, widget)
        _settled(qtbot, widget)
    assert not caught, [f"{w.category.__name__}: {w.message}" for w in caught]
    assert reports[0][2] == "step 1 of 6: reading the scan" and reports[-1][2] == "step 6 of 6: showing the result"
    assert all(total == 1000 for _, total, _ in reports) and [s for s, _, _ in reports] == sorted(s for s, _, _ in reports)
    assert any("segmenting" in m and " of " in m.split("segmenting")[1] for _, _, m in reports)  # its own totals
    assert not any("done" in m for _, _, m in reports) and widget.progress_bar.format() == "done"
    assert widget.status_label.text().startswith("Done in") and "hand: right (from the file's header)" in \
        widget.status_label.text()
    assert "classical on cpu;" in widget.status_label.text()  # no network, so no runtime to name
    assert widget.tabs.currentIndex() == 1  # on to the Review step

    labels = widget.labels_layer
    assert labels is not None and labels in viewer.layers and len(viewer.layers) == n_layers + 1
    assert np.allclose(labels.scale, scan.spacing) and np.allclose(labels.translate, scan.origin)
    assert labels.data.shape == scan.shape
    expected = measure_vbmd(scan, scan.with_data(np.asarray(labels.data), kind="mask", unit="unknown"))
    assert widget.result.d100_mg_ha_cm3 == pytest.approx(expected.d100_mg_ha_cm3, rel=1e-12)
    table = dict(widget.results_table())
    assert table["D100 (mg HA/cm³)"] == f"{expected.d100_mg_ha_cm3:.1f}" and table["Model"] == "classical"
    assert f"{expected.d100_mg_ha_cm3:.1f}" in widget.review_tab.results_label.text()
    assert widget.plot.slices == expected.profile.slice_index
    # the review flags are the engine's call on the segmentation's crop
    engine = FlagContext.from_segmentation(widget.session.scan, widget.segmentation).flags(np.asarray(labels.data))
    assert [f.slice_index for f in widget.flags] == [f.slice_index for f in engine]
    n = len(widget.flags)
    assert f"{n} slice{'' if n == 1 else 's'} flagged" in widget.summary_label.text()

    # copy to clipboard
    qtbot.mouseClick(widget.review_tab.copy_button, _left())
    from qtpy.QtWidgets import QApplication

    assert f"D100 (mg HA/cm³)\t{expected.d100_mg_ha_cm3:.1f}" in QApplication.clipboard().text()

    # a click on the plot goes to that slice; buttons step; the outline toggles
    target = expected.profile.slice_index[len(expected.profile.slice_index) // 2]
    _click_plot(widget.plot, target)
    assert widget.current_slice() == target
    qtbot.mouseClick(widget.review_tab.next_button, _left())
    assert widget.current_slice() == target + 1
    qtbot.mouseClick(widget.review_tab.prev_button, _left())
    assert widget.current_slice() == target
    assert not widget.measuring  # stepping through slices does not re-measure an unchanged mask
    widget.review_tab.outline_check.setChecked(True)
    assert labels.contour > 0
    widget.review_tab.outline_check.setChecked(False)
    assert labels.contour == 0

    # review marks
    widget.review_tab.comment.value = "cortex looks thin"
    qtbot.mouseClick(widget.review_tab.slice_flag_button, _left())
    assert widget.review.slice_status(target) == "flagged"
    assert "cortex looks thin" in widget.review_tab.slice_label.text()

    # corrections: an erase stroke (napari's own edit path), the tools "copy slice to next" and
    # "smooth contour"; the figures and the audit trail follow each edit, undo and redo
    widget.review_tab.reviewer.value = "tech A"
    d100_before = widget.result.d100_mg_ha_cm3
    area_before = int((np.asarray(labels.data)[target + 1] != 0).sum())
    labels.mode = "erase"
    with labels.block_history():
        idx = np.nonzero(np.asarray(labels.data) != 0)
        keep = idx[0] == target
        labels.data_setitem(tuple(a[keep] for a in idx), 0)
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    assert widget.result.d100_mg_ha_cm3 != pytest.approx(d100_before)
    qtbot.mouseClick(widget.correct_tab.tool_buttons["copy slice to next"], _left())
    assert int((np.asarray(labels.data)[target + 1] != 0).sum()) == 0
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 2, timeout=10000)
    stats = widget.correction_stats()
    assert stats.voxels_removed == int(expected.profile.n_voxels[expected.profile.slice_index.index(target)]) + area_before
    assert "Correction: +0 / −" in widget.correct_tab.correction_label.text()
    labels.undo()  # the plugin's correction is one undo step
    assert int((np.asarray(labels.data)[target + 1] != 0).sum()) == area_before
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    labels.undo()  # and the erase another
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices, timeout=10000)
    assert widget.result.d100_mg_ha_cm3 == pytest.approx(d100_before, rel=1e-9)
    labels.redo()
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    smooth_at = target + 2
    widget.go_to_slice(smooth_at)
    spur = np.asarray(labels.data)[smooth_at] != 0
    ys, xs = np.nonzero(spur)
    row = int(np.median(ys))
    edge = int(xs[ys == row].max())
    labels.mode = "paint"
    labels.data_setitem((np.full(3, smooth_at), np.full(3, row), np.arange(edge + 1, edge + 4)), 1)  # a brush slip
    qtbot.mouseClick(widget.correct_tab.tool_buttons["smooth contour"], _left())
    _settled(qtbot, widget)
    trail = widget.session.history.operations
    assert [(op["operation"], op["kind"]) for op in trail] == [
        ("erase stroke", "edit"), ("copy slice to next", "edit"), ("undo copy slice to next", "undo"),
        ("undo erase stroke", "undo"), ("redo erase stroke", "redo"), ("paint stroke", "edit"),
        ("smooth contour", "edit")]
    assert trail[0]["slices"] == [target] and trail[1]["slices"] == [target + 1] and trail[-1]["slices"] == [smooth_at]
    assert trail[-1]["removed"] > 0 and trail[-1]["by"] == "tech A"
    assert widget.correct_tab.trail.count() == len(trail)
    assert "smooth contour · slice" in widget.correct_tab.trail.item(len(trail) - 1).text()
    d100_final = widget.result.d100_mg_ha_cm3

    # export: by default into a folder of its own beside the scan, made on export
    default = phantom_file_dir(image_layer) / "vbmd-export"
    assert widget.export_tab.folder_text() == str(default) and widget.export_tab.case.value == "ph3"
    widget.export_tab.nifti.value = True
    qtbot.mouseClick(widget.review_tab.case_ok_button, _left())
    qtbot.mouseClick(widget.export_tab.export_button.native, _left())
    mask_aim, mask_nii = default / "ph3_mask.aim", default / "ph3_mask.nii.gz"
    assert mask_aim.is_file() and mask_nii.is_file()
    for path in (mask_aim, mask_nii):
        back = read_mask(path)
        assert back.same_grid(scan)
        assert np.array_equal(back.data != 0, np.asarray(labels.data) != 0)
    report = json.loads((default / "ph3_report.json").read_text())
    assert report["vbmd"]["d100_mg_ha_cm3"] == pytest.approx(d100_final, rel=1e-9)
    assert measure_vbmd(scan, read_mask(mask_aim, like=scan)).d100_mg_ha_cm3 == pytest.approx(d100_final, rel=1e-9)
    assert report["review_status"] == "reviewed" and report["model"] == "classical"
    provenance = report["mask_provenance"]
    smooth = [op for op in provenance["operations"] if op["operation"] == "smooth contour"]
    assert smooth and smooth[0]["slices"] == [smooth_at] and smooth[0]["removed"] > 0  # the fix tools are recorded
    assert provenance["n_edits"] == 3 and provenance["corrected_by"] == "tech A"  # undone edits do not count
    assert ReviewStore.load(default / "ph3_review.json").slice_status(target) == "flagged"
    assert read_mask(default / "ph3_model_mask.aim").data.sum() == expected.n_voxels

    # a second export asks before replacing our own earlier export
    asked = []
    monkeypatch.setattr(widget, "ask", lambda title, text: asked.append(title) or False)
    content = mask_aim.read_bytes()
    qtbot.mouseClick(widget.export_tab.export_button.native, _left())
    assert asked and "earlier export" in asked[-1] and mask_aim.read_bytes() == content

    # export beside the truth mask (the scan's folder, the scan's name): nothing is written over it,
    # and nothing is even offered
    shown = _errors(monkeypatch)
    truth = phantom_file_dir(image_layer) / "ph3_mask.aim"
    truth_bytes, before = truth.read_bytes(), sorted(p.name for p in truth.parent.iterdir())
    widget.export_tab.folder.line_edit.value = str(truth.parent)
    asked.clear()
    qtbot.mouseClick(widget.export_tab.export_button.native, _left())
    assert not asked and shown and "not napari-vbmd's own export" in shown[-1]
    assert truth.read_bytes() == truth_bytes and sorted(p.name for p in truth.parent.iterdir()) == before

    # training pair
    train = default.parent / "train"
    train.mkdir()
    widget.export_tab.training_folder.line_edit.value = str(train)
    qtbot.mouseClick(widget.export_tab.train_button.native, _left())
    from napari_vbmd.segmentation.datasets import find_pairs

    assert [p.case for p in find_pairs(train)] == ["ph3"]


def phantom_file_dir(layer):
    from pathlib import Path

    return Path(layer.metadata["vbmd"]["source"]).parent


def test_a_rerun_over_corrections_asks_and_keeps_them(widget_and_viewer, qtbot, monkeypatch, tmp_path):
    widget, viewer, _ = widget_and_viewer
    _run(qtbot, widget)
    labels = widget.labels_layer
    z = widget.result.first_slice + 2
    with labels.block_history():
        idx = np.nonzero(np.asarray(labels.data) != 0)
        keep = idx[0] == z
        labels.data_setitem(tuple(a[keep] for a in idx), 0)  # 1 slice erased
    corrected = np.asarray(labels.data).copy()
    answers = [False]
    asked = []
    monkeypatch.setattr(widget, "ask", lambda title, text: asked.append(text) or answers.pop(0))
    qtbot.mouseClick(widget.run_button, _left())
    assert asked and "corrections" in asked[-1] and "in 1 slice" in asked[-1] and not widget.busy
    assert np.array_equal(np.asarray(labels.data), corrected)  # declined: nothing changed
    answers.append(True)
    _run(qtbot, widget)
    assert len(asked) == 2
    kept_layers = [layer for layer in viewer.layers if "corrected (kept" in layer.name]
    assert len(kept_layers) == 1 and not kept_layers[0].visible and not kept_layers[0].editable
    assert np.array_equal(np.asarray(kept_layers[0].data), corrected)
    assert widget.labels_layer is not labels and widget.labels_layer in viewer.layers
    assert np.asarray(widget.labels_layer.data)[z].any()  # the new model mask
    earlier = widget.session.history.provenance()["earlier_versions"]
    assert len(earlier) == 1 and earlier[0]["operations"][0]["operation"] == "edit"
    assert widget.correct_tab.trail.item(0).text().startswith("earlier version kept")
    # a run over an uncorrected mask does not ask
    _run(qtbot, widget)
    assert len(asked) == 2 and len(widget.session.history.earlier_versions) == 1


def test_deleting_the_layers_leaves_the_widget_usable(make_napari_viewer, phantom_file, qtbot, monkeypatch):
    from qtpy.QtCore import Qt

    from napari.utils.key_bindings import KeyBinding
    from napari.viewer import Viewer

    viewer = make_napari_viewer(show=True)
    [layer] = viewer.open(str(phantom_file), plugin="napari-vbmd")
    widget = open_widget(viewer)
    shown = _errors(monkeypatch)
    _run(qtbot, widget)
    assert widget.flags

    # Shift+N / Shift+P / Shift+C are the viewer's (napari's shortcut list has them): they work with
    # the image layer selected, not only the mask
    for key in ("Shift+N", "Shift+P", "Shift+C"):
        assert KeyBinding.from_str(key) in Viewer.class_keymap
    assert "Shift+N" in widget.review_tab.keys_label.text() and "Shortcuts" in widget.review_tab.keys_label.text()
    viewer.layers.selection.active = layer
    canvas = viewer.window._qt_viewer.canvas.native
    window = viewer.window._qt_window
    window.activateWindow()
    canvas.setFocus()
    widget.go_to_slice(0)
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert widget.current_slice() == widget.flags[0].slice_index
    qtbot.keyClick(canvas, Qt.Key.Key_C, Qt.KeyboardModifier.ShiftModifier)
    assert widget.labels_layer.contour > 0 and widget.review_tab.outline_check.isChecked()

    # delete both layers: no error, the case is closed and its figures go
    viewer.layers.remove(widget.labels_layer)
    viewer.layers.remove(layer)
    qtbot.wait(50)
    assert not shown, shown
    assert widget.labels_layer is None and not widget.session.active
    assert widget.summary_label.text() == "No case yet." and widget.plot.slices == []
    assert widget.review_tab.results_label.text() == "—" and not widget.review_tab.next_flag_button.isEnabled()
    assert widget.current_slice() is None
    widget.step_slice(1)
    widget.next_flagged()
    qtbot.keyClick(canvas, Qt.Key.Key_N, Qt.KeyboardModifier.ShiftModifier)
    assert not shown, shown

    # another scan opens: the form offers it, Run works
    [again] = viewer.open(str(phantom_file), plugin="napari-vbmd")
    assert widget.run_tab.scan_layer() == again
    _run(qtbot, widget)
    assert widget.session.active and widget.labels_layer in viewer.layers and not shown


def _clipped(root) -> list[str]:
    """Visible widgets reaching past the right edge of ``root`` or too narrow for their own text."""
    from qtpy.QtCore import QPoint
    from qtpy.QtWidgets import QAbstractButton, QComboBox, QLabel, QWidget

    bad = []
    for w in root.findChildren(QWidget):
        if not w.isVisibleTo(root) or not w.isVisible() or w.width() <= 1:
            continue
        right = w.mapTo(root, QPoint(w.width(), 0)).x()
        if right > root.width() + 1:
            bad.append(f"{type(w).__name__} {getattr(w, 'text', lambda: '')()!r} ends at {right} > {root.width()}")
        if isinstance(w, QComboBox) and w.width() < 60:
            bad.append(f"combo box {w.currentText()!r} is {w.width()} px wide")
        if isinstance(w, (QAbstractButton, QLabel)) and not (isinstance(w, QLabel) and w.wordWrap()):
            if w.text() and w.sizeHint().width() > w.width() + 2 and not w.text().startswith("<"):
                bad.append(f"{type(w).__name__} {w.text()!r} needs {w.sizeHint().width()} px, has {w.width()}")
    return bad


@pytest.mark.parametrize("size", [(1280, 800), (1600, 1000)])
def test_the_steps_fit_the_screen(make_napari_viewer, phantom_file, qtbot, size):
    """Every step of the workflow, with a Compare dock beside it, fits without horizontal clipping."""
    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(*size)
    viewer.open(str(phantom_file), plugin="napari-vbmd")
    widget = open_widget(viewer)
    _run(qtbot, widget)
    compare = viewer.window.add_plugin_dock_widget("napari-vbmd", "Compare masks")[1]
    analysis = viewer.window.add_plugin_dock_widget("napari-vbmd", "Rating study analysis (owner)")[1]
    qtbot.wait(200)
    for index in range(widget.tabs.count()):
        widget.tabs.setCurrentIndex(index)
        qtbot.wait(50)
        bad = _clipped(widget)
        assert not bad, (widget.tabs.tabText(index), bad)
    assert widget.tabs.tabBar().sizeHint().width() <= widget.tabs.width()
    for other in (compare, analysis):
        assert not _clipped(other), type(other).__name__


def test_errors_are_notifications_not_dialogs(widget_and_viewer, qtbot, monkeypatch):
    widget, viewer, _ = widget_and_viewer
    shown = _errors(monkeypatch)
    widget.run_tab.model.value = "unet3d"  # no weights bundled: a clear one-line error from the worker
    _run(qtbot, widget)
    assert shown and "no trained weights" in shown[-1]
    assert widget.labels_layer is None
    widget.run_tab.model.value = "checkpoint file"
    qtbot.mouseClick(widget.run_button, _left())
    assert "choose a checkpoint file" in shown[-1] and not widget.busy
    widget.export()  # its button is disabled before a run; called anyway, it says why
    assert "nothing to export" in shown[-1]


def _click_plot(plot, z):
    """Click the density axes of the slice plot at slice ``z`` (through matplotlib's event path)."""
    from matplotlib.backend_bases import MouseEvent

    axes = plot.density_axes
    x, y = axes.transData.transform((z, np.mean(axes.get_ylim())))
    MouseEvent("button_press_event", plot, x, y, button=1)._process()


def test_a_checkpoint_model_is_loaded_once_and_reused(widget_and_viewer, qtbot, tmp_path, monkeypatch):
    from napari_vbmd.segmentation import checkpoint

    widget, viewer, _ = widget_and_viewer
    json_path = site_checkpoint(tmp_path / "tiny", name="tiny", boundary_band_mm=0.0)
    loads = []
    real_load = checkpoint.load_checkpoint
    monkeypatch.setattr(checkpoint, "load_checkpoint",
                        lambda path, device="cpu": loads.append(str(path)) or real_load(path, device))
    widget.run_tab.model.value = "checkpoint file"
    widget.run_tab.checkpoint.line_edit.value = str(json_path)
    for run in range(2):
        _run(qtbot, widget)
        assert widget.status_label.text().startswith("Done"), widget.status_label.text()
        assert widget.segmentation.model == "tiny" and widget.labels_layer in viewer.layers
        if run == 0:  # an edit before the second run must not be undoable into the second run's mask
            labels = widget.labels_layer
            labels.data_setitem(np.nonzero(np.asarray(labels.data) != 0), 0)
            monkeypatch.setattr(widget, "ask", lambda title, text: True)  # run again over the edit
    assert np.asarray(widget.labels_layer.data).any()
    fresh = np.asarray(widget.labels_layer.data).copy()
    widget.labels_layer.undo()
    assert np.array_equal(np.asarray(widget.labels_layer.data), fresh)
    assert loads == [str(json_path)]
    loaded = widget.models.loaded()
    assert len(loaded) == 1 and next(iter(loaded.values())).name == "tiny"


def test_a_rerun_without_corrections_updates_the_layer_with_a_fresh_history(widget_and_viewer, qtbot):
    widget, viewer, _ = widget_and_viewer
    _run(qtbot, widget)
    labels = widget.labels_layer
    z = widget.result.first_slice + 1
    labels.data_setitem((np.array([z]), np.array([0]), np.array([0])), 1)
    labels.undo()  # the mask is the model's again, but napari could redo that edit
    _run(qtbot, widget)
    assert widget.labels_layer is labels and sum(layer == labels for layer in viewer.layers) == 1
    fresh = np.asarray(labels.data).copy()
    labels.redo()
    labels.undo()
    assert np.array_equal(np.asarray(labels.data), fresh)  # nothing of the first run is undoable or redoable


def test_the_boundary_band_is_the_models_unless_chosen(widget_and_viewer, qtbot, tmp_path):
    widget, viewer, _ = widget_and_viewer
    widget.run_tab.model.value = "checkpoint file"
    checkpoint = site_checkpoint(tmp_path / "tiny", name="tiny", boundary_band_mm=0.3)
    widget.run_tab.checkpoint.line_edit.value = str(checkpoint)
    assert widget.run_tab.band.native.text() == "the model's" and widget.run_tab.boundary_band_mm() is None

    masks = {}
    for band in (None, 0.0, 1.0):
        if band is not None:
            widget.run_tab.band.value = band
            assert widget.run_tab.boundary_band_mm() == band
        _run(qtbot, widget)
        assert widget.status_label.text().startswith("Done"), widget.status_label.text()
        used = widget.segmentation.mask.header["segmentation"]["boundary_band_mm"]
        assert used == (0.3 if band is None else band)
        masks[band] = np.asarray(widget.labels_layer.data) != 0
    # refined onto the scan's edge within 0.3 or 1 mm, the network's boundary moves
    assert not np.array_equal(masks[1.0], masks[0.0])
    assert not np.array_equal(masks[None], masks[0.0])
