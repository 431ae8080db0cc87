"""The compare-masks dock widget in a real napari viewer (Xvfb)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan
from napari_vbmd.layers import scan_to_layer_data

CAL = Calibration(density_slope=1600.0, density_intercept=-400.0, mu_scaling=8192)


@pytest.mark.gui
def test_compare_widget_shows_metrics_vbmd_and_difference(make_napari_viewer, qtbot):
    from napari_vbmd.widgets.compare import DIFFERENCE_LAYER, NO_SCAN, CompareMasksWidget

    data = np.full((6, 30, 30), 2000, np.int16)
    data[:, 8:22, 8:22] = 4000
    scan = Scan(data=data, spacing=(0.1, 0.2, 0.2), origin=(1.0, 2.0, 3.0), calibration=CAL, unit="native")
    viewer = make_napari_viewer()
    image_data, image_kwargs, _ = scan_to_layer_data(scan, name="scan")
    viewer.add_image(image_data, **image_kwargs)
    reference = np.zeros(data.shape, np.uint8)
    reference[:, 8:22, 8:22] = 1
    predicted = np.zeros(data.shape, np.uint8)
    predicted[:, 8:22, 10:24] = 1  # 2 voxels to the right
    viewer.add_labels(reference, name="expert", scale=scan.spacing, translate=scan.origin)
    viewer.add_labels(predicted, name="network", scale=scan.spacing, translate=scan.origin)

    widget = CompareMasksWidget(viewer)
    viewer.window.add_dock_widget(widget)
    assert widget.image.value == "scan"
    assert list(widget.image.choices) == ["scan", NO_SCAN]
    widget.reference.value = "expert"
    widget.predicted.value = "network"
    widget.compare()
    qtbot.waitUntil(lambda: widget.result is not None and widget.compare_button.isEnabled(), timeout=10000)

    values = {widget.table.item(i, 0).text(): widget.table.item(i, 1).text() for i in range(widget.table.rowCount())}
    assert values["Dice"] == f"{12 / 14:.4f}"
    assert values["HD95 (mm)"] == "0.400"
    assert float(values["D100 reference (mg HA/cm³)"]) == pytest.approx(4000 * 1600 / 8192 - 400, abs=0.01)
    assert float(values["D100 predicted (mg HA/cm³)"]) < float(values["D100 reference (mg HA/cm³)"])
    layer = viewer.layers[DIFFERENCE_LAYER]
    assert np.count_nonzero(layer.data == 1) == 6 * 14 * 2 and np.count_nonzero(layer.data == 2) == 6 * 14 * 2
    assert np.allclose(layer.scale, scan.spacing) and np.allclose(layer.translate, scan.origin)
    colours = layer.colormap.map(np.array([1, 2]))
    assert not np.allclose(colours[0], colours[1])
    # added / missing are drawn in colours of their own: not the model's mask's, nor a file mask's
    from matplotlib.colors import to_rgba

    from napari_vbmd.layers import FILE_MASK_COLOUR, MODEL_MASK_COLOUR

    for colour in (MODEL_MASK_COLOUR, FILE_MASK_COLOUR):
        assert not any(np.allclose(c[:3], to_rgba(colour)[:3], atol=0.1) for c in colours)
    # the difference layer is not offered as a mask to compare, and comparing again reuses it
    assert DIFFERENCE_LAYER not in widget.reference.choices
    widget.result = None
    widget.compare()
    qtbot.waitUntil(lambda: widget.result is not None and widget.compare_button.isEnabled(), timeout=10000)
    assert sum(1 for lyr in viewer.layers if lyr.name.startswith("difference")) == 1

    widget.predicted.value = "expert"
    widget.compare()
    assert "choose two different masks" in widget.status_label.text()

    # with one labels layer, Compare says what it needs (not "the same layer")
    viewer.layers.remove("network")
    viewer.layers.remove(DIFFERENCE_LAYER)
    widget.compare()
    assert "needs two labels layers" in widget.status_label.text() and "only 'expert' is open" in widget.status_label.text()
