"""The Segment & measure widget in a real napari viewer (Xvfb): segment a phantom, cancel a run,
run again, review, correct (and undo), and export; the export is read back."""
from __future__ import annotations

import json

import numpy as np
import pytest

from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
from napari_vbmd.review import ReviewStore, flag_slices

pytestmark = pytest.mark.gui


@pytest.fixture(scope="session")
def phantom_file(tmp_path_factory):
    folder = tmp_path_factory.mktemp("workflow_phantom")
    phantom = generate_phantom(PhantomSpec(seed=3, n_slices=24, spacing_mm=0.25))
    return write_phantom(phantom, folder, "ph3")["image"]


@pytest.fixture()
def widget_and_viewer(make_napari_viewer, phantom_file, qtbot):
    from napari_vbmd.widgets.workflow import SegmentMeasureWidget

    viewer = make_napari_viewer()
    [layer] = viewer.open(str(phantom_file), plugin="napari-vbmd")
    widget = SegmentMeasureWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Segment & measure")
    widget.model_combo.setCurrentText("classical")
    widget.device_combo.setCurrentText("cpu")
    return widget, viewer, layer


def _run(qtbot, widget, timeout=60000):
    qtbot.mouseClick(widget.run_button, _left())
    qtbot.waitUntil(lambda: not widget.busy, timeout=timeout)


def _left():
    from qtpy.QtCore import Qt

    return Qt.LeftButton


def test_segment_cancel_rerun_review_correct_undo_export(widget_and_viewer, qtbot, tmp_path, monkeypatch):
    widget, viewer, image_layer = widget_and_viewer
    scan = read_scan(image_layer.metadata["vbmd"]["source"])
    n_layers = len(viewer.layers)

    # cancel: click Run, then Cancel at once; the run stops and leaves no layer behind
    qtbot.mouseClick(widget.run_button, _left())
    assert widget.busy and widget.cancel_button.isEnabled()
    qtbot.mouseClick(widget.cancel_button, _left())
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)
    assert len(viewer.layers) == n_layers and widget.labels_layer is None
    assert "Cancelled" in widget.status_label.text()
    assert widget.run_button.isEnabled() and not widget.cancel_button.isEnabled()

    # run for real: a labels layer on the scan's exact geometry, figures = the engine's
    _run(qtbot, widget)
    labels = widget.labels_layer
    assert labels is not None and labels in viewer.layers and len(viewer.layers) == n_layers + 1
    assert np.allclose(labels.scale, scan.spacing) and np.allclose(labels.translate, scan.origin)
    assert labels.data.shape == scan.shape
    expected = measure_vbmd(scan, scan.with_data(np.asarray(labels.data), kind="mask", unit="unknown"))
    assert widget.result.d100_mg_ha_cm3 == pytest.approx(expected.d100_mg_ha_cm3, rel=1e-12)
    table = dict(widget.results_table())
    assert table["D100 (mg HA/cm³)"] == f"{expected.d100_mg_ha_cm3:.1f}" and table["Model"] == "classical"
    assert f"{expected.d100_mg_ha_cm3:.1f}" in widget.results_label.text()
    assert widget.plot.slices == expected.profile.slice_index
    # review flags: the engine's, on the segmentation's crop, in mm at the scan's spacing and cut at
    # the model's threshold (at 82 um a fixed pixel count would flag every slice)
    box, probability, density, threshold, spacing = widget._crop
    assert threshold == widget.segmentation.threshold and tuple(spacing) == tuple(scan.spacing)
    engine_flags = flag_slices(np.asarray(labels.data)[box.slices], probability=probability, density=density,
                               threshold=threshold, spacing=spacing)
    assert [f.slice_index for f in widget.flags] == [f.slice_index + box.z0 for f in engine_flags]

    # copy to clipboard
    qtbot.mouseClick(widget.copy_button, _left())
    from qtpy.QtWidgets import QApplication

    assert f"D100 (mg HA/cm³)\t{expected.d100_mg_ha_cm3:.1f}" in QApplication.clipboard().text()

    # a click on the plot goes to that slice; buttons step; contour toggles
    target = expected.profile.slice_index[len(expected.profile.slice_index) // 2]
    _click_plot(widget.plot, target)
    assert widget.current_slice() == target
    qtbot.mouseClick(widget.next_button, _left())
    assert widget.current_slice() == target + 1
    qtbot.mouseClick(widget.prev_button, _left())
    assert widget.current_slice() == target
    assert not widget.measuring  # stepping through slices does not re-measure an unchanged mask
    widget.contour_check.setChecked(True)
    assert labels.contour > 0
    widget.contour_check.setChecked(False)
    assert labels.contour == 0

    # review marks
    widget.comment_edit.setText("cortex looks thin")
    qtbot.mouseClick(widget.slice_flag_button, _left())
    assert widget.review.slice_status(target) == "flagged"
    assert "cortex looks thin" in widget.slice_label.text()

    # correction: erase the current slice (napari's own edit path, as an erase stroke records it),
    # then the plugin's "copy slice to next" copies the empty slice on; the figures follow each
    # edit, and undo/redo bring them back
    d100_before = widget.result.d100_mg_ha_cm3
    area_before = int((np.asarray(labels.data)[target + 1] != 0).sum())
    with labels.block_history():
        idx = np.nonzero(np.asarray(labels.data) != 0)
        keep = idx[0] == target
        labels.data_setitem(tuple(a[keep] for a in idx), 0)
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    assert widget.result.d100_mg_ha_cm3 != pytest.approx(d100_before)
    qtbot.mouseClick(widget.copy_next_button, _left())  # copies the now empty slice onto the next one
    assert int((np.asarray(labels.data)[target + 1] != 0).sum()) == 0
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 2, timeout=10000)
    stats = widget.correction_stats()
    assert stats.voxels_removed == int(expected.profile.n_voxels[expected.profile.slice_index.index(target)]) + area_before
    assert stats.voxels_added == 0
    assert "Correction: +0" in widget.correction_label.text()
    labels.undo()  # the plugin's correction is one undo step
    assert int((np.asarray(labels.data)[target + 1] != 0).sum()) == area_before
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    labels.undo()  # and the erase another
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices, timeout=10000)
    assert widget.result.d100_mg_ha_cm3 == pytest.approx(d100_before, rel=1e-9)
    labels.redo()
    qtbot.waitUntil(lambda: not widget.measuring and widget.result.n_slices == expected.n_slices - 1, timeout=10000)
    d100_final = widget.result.d100_mg_ha_cm3

    # export, read back: right geometry and figures; a second export asks before overwriting
    out = tmp_path / "out"
    out.mkdir()
    widget.export_dir_edit.setText(str(out))
    widget.case_edit.setText("ph3")
    widget.nifti_check.setChecked(True)
    qtbot.mouseClick(widget.case_ok_button, _left())
    qtbot.mouseClick(widget.export_button, _left())
    mask_aim, mask_nii = out / "ph3_mask.aim", out / "ph3_mask.nii.gz"
    assert mask_aim.is_file() and mask_nii.is_file()
    for path in (mask_aim, mask_nii):
        back = read_mask(path)
        assert back.same_grid(scan)
        assert np.array_equal(back.data != 0, np.asarray(labels.data) != 0)
    report = json.loads((out / "ph3_report.json").read_text())
    assert report["vbmd"]["d100_mg_ha_cm3"] == pytest.approx(d100_final, rel=1e-9)
    assert measure_vbmd(scan, read_mask(mask_aim, like=scan)).d100_mg_ha_cm3 == pytest.approx(d100_final, rel=1e-9)
    assert report["review_status"] == "reviewed" and report["model"] == "classical"
    assert report["correction"]["voxels_removed"] == int(expected.profile.n_voxels[expected.profile.slice_index.index(target)])
    assert ReviewStore.load(out / "ph3_review.json").slice_status(target) == "flagged"
    model_mask = read_mask(out / "ph3_model_mask.aim")
    assert model_mask.data.sum() == expected.n_voxels

    asked = []
    monkeypatch.setattr(widget, "_confirm_overwrite", lambda paths: asked.append(paths) or False)
    content = mask_aim.read_bytes()
    qtbot.mouseClick(widget.export_button, _left())
    assert asked and mask_aim.read_bytes() == content

    # training pair
    train = tmp_path / "train"
    train.mkdir()
    widget.train_dir_edit.setText(str(train))
    qtbot.mouseClick(widget.train_button, _left())
    from napari_vbmd.segmentation.datasets import find_pairs

    assert [p.case for p in find_pairs(train)] == ["ph3"]


def test_errors_are_notifications_not_dialogs(widget_and_viewer, qtbot, monkeypatch):
    widget, viewer, _ = widget_and_viewer
    shown = []
    import napari_vbmd.widgets.workflow as workflow

    monkeypatch.setattr(workflow, "show_error", lambda message: shown.append(message))
    widget.model_combo.setCurrentText("unet3d")  # no weights bundled: a clear one-line error from the worker
    _run(qtbot, widget)
    assert shown and "no trained weights" in shown[-1]
    assert widget.labels_layer is None
    widget.model_combo.setCurrentText("checkpoint file")
    qtbot.mouseClick(widget.run_button, _left())
    assert "choose a checkpoint file" in shown[-1] and not widget.busy
    qtbot.mouseClick(widget.export_button, _left())  # disabled before a run: nothing happens
    widget.export()
    assert "nothing to export" in shown[-1]


def _click_plot(plot, z):
    """Click the density axes of the slice plot at slice ``z`` (through matplotlib's event path)."""
    from matplotlib.backend_bases import MouseEvent

    axes = plot.density_axes
    x, y = axes.transData.transform((z, np.mean(axes.get_ylim())))
    MouseEvent("button_press_event", plot, x, y, button=1)._process()


def _everything_checkpoint(folder, boundary_band_mm=0.0):
    """A tiny network that marks every voxel of the bone crop: a mask, whatever the weights."""
    import torch

    from napari_vbmd.segmentation.checkpoint import ModelConfig, save_checkpoint
    from napari_vbmd.segmentation.networks import build_network

    torch.manual_seed(0)
    config = ModelConfig("unet2d_small", {"base": 4, "depth": 2}, spacing_mm=(0.5, 0.5, 0.5), mean=200.0, std=400.0,
                         name="tiny", boundary_band_mm=boundary_band_mm)
    net = build_network("unet2d_small", base=4, depth=2)
    with torch.no_grad():
        net.head.weight.zero_()
        net.head.bias.fill_(5.0)
    json_path, _ = save_checkpoint(folder / "tiny", net, config)
    return json_path


def test_a_checkpoint_model_is_loaded_once_and_reused(widget_and_viewer, qtbot, tmp_path, monkeypatch):
    from napari_vbmd.segmentation import registry

    widget, viewer, _ = widget_and_viewer
    json_path = _everything_checkpoint(tmp_path)
    loads = []
    real_load = registry.load_model
    monkeypatch.setattr(registry, "load_model", lambda spec, device: loads.append(spec) or real_load(spec, device))
    widget.model_combo.setCurrentText("checkpoint file")
    widget.checkpoint_edit.setText(str(json_path))
    for run in range(2):
        _run(qtbot, widget)
        assert widget.status_label.text().startswith("Done"), widget.status_label.text()
        assert widget.segmentation.model == "tiny" and widget.labels_layer in viewer.layers
        if run == 0:  # an edit before the second run must not be undoable into the second run's mask
            labels = widget.labels_layer
            labels.data_setitem(np.nonzero(np.asarray(labels.data) != 0), 0)
    # the second run updated the same layer, with a fresh undo history
    assert widget.labels_layer is labels and sum(layer is labels for layer in viewer.layers) == 1
    assert np.asarray(labels.data).any()
    fresh = np.asarray(labels.data).copy()
    labels.undo()
    assert np.array_equal(np.asarray(labels.data), fresh)
    assert loads == [str(json_path)]
    assert len(widget._models) == 1 and next(iter(widget._models.values())).name == "tiny"


def test_the_boundary_band_is_the_models_unless_chosen(widget_and_viewer, qtbot, tmp_path):
    widget, viewer, _ = widget_and_viewer
    widget.model_combo.setCurrentText("checkpoint file")
    widget.checkpoint_edit.setText(str(_everything_checkpoint(tmp_path, boundary_band_mm=0.3)))
    assert widget.band_spin.text() == "the model's" and widget.boundary_band_mm() is None

    masks = {}
    for band in (None, 0.0, 1.0):
        if band is not None:
            widget.band_spin.setValue(band)
            assert widget.boundary_band_mm() == band
        _run(qtbot, widget)
        assert widget.status_label.text().startswith("Done"), widget.status_label.text()
        used = widget.segmentation.mask.header["segmentation"]["boundary_band_mm"]
        assert used == (0.3 if band is None else band)
        masks[band] = np.asarray(widget.labels_layer.data) != 0
    # the network marks the whole bone crop; refined onto the scan's edge within 1 mm it shrinks towards MC2
    assert masks[1.0].sum() < masks[0.0].sum()
    assert not np.array_equal(masks[None], masks[0.0])
