"""The Segment & measure widget on a file that says neither what its values mean nor how large its
voxels are (a bare TIFF): the form asks, Run refuses until both are given, and the answer is that of
the calibrated AIM, saying where its calibration and voxel size came from."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile

from napari_vbmd.io import read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("values_gui")
    paths = write_phantom(generate_phantom(PhantomSpec(seed=3, n_slices=24, spacing_mm=0.25)), folder, "ph3")
    aim = read_scan(paths["image"])
    tifffile.imwrite(folder / "bare.tif", np.asarray(aim.data))  # the same integers; no unit, no voxel size
    return {"aim": paths["image"], "tif": folder / "bare.tif"}


def _open(make_napari_viewer, path, monkeypatch):
    import napari_vbmd.widgets._worker as worker

    viewer = make_napari_viewer()
    [layer] = viewer.open(str(path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = "classical"
    widget.run_tab.device.value = "cpu"
    errors = []
    monkeypatch.setattr(worker, "show_error", errors.append)
    return viewer, layer, widget, errors


def _run(qtbot, widget):
    from qtpy.QtCore import Qt

    qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
    qtbot.waitUntil(lambda: not widget.busy, timeout=60000)


def test_a_bare_tiff_is_asked_for_its_voxel_size_and_values_and_then_measures_as_its_aim(
        make_napari_viewer, files, qtbot, monkeypatch):
    viewer, layer, widget, errors = _open(make_napari_viewer, files["tif"], monkeypatch)
    form = widget.run_tab
    assert form.needs_values and form.needs_spacing
    assert not form.values.native.isHidden() and not form.voxel.native.isHidden()
    assert form.slope.native.isHidden()  # until the linear choice is made
    assert "could not look" in form.hand.source.value and "voxel size" in form.hand.source.value

    # Run refuses, in one line naming the file and both things missing; nothing is added
    n_layers = len(viewer.layers)
    _run(qtbot, widget)
    assert errors and len(errors[-1].splitlines()) == 1
    assert "bare.tif: the file does not state its voxel size" in errors[-1] and "what its values are" in errors[-1]
    assert len(viewer.layers) == n_layers and widget.labels_layer is None

    # the voxel size alone: still refused, for the values
    for size in form.voxel_sizes:
        size.value = 0.25
    _run(qtbot, widget)
    assert "does not state what its values are" in errors[-1] and "voxel size" not in errors[-1]

    # the linear calibration of the scanner that wrote the integers, and the hand
    aim = read_scan(files["aim"])
    form.values.value = "value × slope + intercept"
    assert not form.slope.native.isHidden() and not form.intercept.native.isHidden()
    form.slope.value = aim.calibration.density_per_native
    form.intercept.value = aim.calibration.density_intercept
    form.hand.choice.value = "right"
    errors.clear()
    _run(qtbot, widget)
    assert not errors, errors
    table = dict(widget.session.results_rows())
    assert table["Calibration"].endswith("(user)") and "density = stored value *" in table["Calibration"]
    assert table["Voxel size"] == "0.25 x 0.25 x 0.25 mm (user (the Run form's Voxel size))"
    expected = measure_vbmd(aim, np.asarray(widget.labels_layer.data) > 0).d100_mg_ha_cm3
    assert float(table["D100 (mg HA/cm³)"]) == pytest.approx(expected, abs=0.06)  # shown to 0.1
    assert widget.session.result.d100_mg_ha_cm3 == pytest.approx(expected, rel=1e-5)
    # the scan is drawn on the voxel size given, under its mask; the name drops "(voxel size unknown)"
    assert tuple(layer.scale) == (0.25, 0.25, 0.25) == tuple(widget.labels_layer.scale)
    assert layer.name == "bare.tif" and widget.labels_layer.name == "bare.tif MC2"
    assert form.voxel.native.isHidden() and not form.values.native.isHidden()  # the values stay the form's

    # what was said belongs to that scan: another bare file starts blank, and coming back restores it
    [other] = viewer.open(str(files["tif"]), plugin="napari-vbmd")
    form.scan.value = other
    assert form.needs_spacing and form.values.value == "not given" and all(s.value == 0 for s in form.voxel_sizes)
    form.scan.value = layer
    assert form.values.value == "value × slope + intercept"
    assert form.slope.value == pytest.approx(aim.calibration.density_per_native, abs=1e-6)

    # a file that says both shows neither row
    [aim_layer] = viewer.open(str(files["aim"]), plugin="napari-vbmd")
    form.scan.value = aim_layer
    assert not form.needs_values and not form.needs_spacing
    assert form.values.native.isHidden() and form.voxel.native.isHidden()


def test_values_already_in_density_and_a_slope_of_zero(make_napari_viewer, files, qtbot, monkeypatch, tmp_path):
    aim = read_scan(files["aim"])
    path = tmp_path / "density.tif"
    tifffile.imwrite(path, aim.density().astype(np.float32), imagej=True, resolution=(4.0, 4.0),
                     metadata={"spacing": 0.25, "unit": "mm"})  # a voxel size (0.25 mm), but no unit for the values
    viewer, layer, widget, errors = _open(make_napari_viewer, path, monkeypatch)
    form = widget.run_tab
    assert form.needs_values and not form.needs_spacing
    form.slope.value = 0.0
    form.values.value = "value × slope + intercept"  # the hand is not looked for with a slope of 0 either
    assert "could not look" in form.hand.source.value and "is 0" in form.hand.source.value
    form.hand.choice.value = "right"
    _run(qtbot, widget)
    assert "slope" in errors[-1] and "is 0" in errors[-1]
    form.values.value = "mg HA/cm³"
    errors.clear()
    _run(qtbot, widget)
    assert not errors, errors
    table = dict(widget.session.results_rows())
    assert table["Calibration"] == "values are mg HA/cm3 (user)"
    assert table["Voxel size"].endswith("mm (file)")
