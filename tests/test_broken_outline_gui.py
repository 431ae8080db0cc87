"""The broken-outline refusal in the Segment & measure widget, in a real napari viewer (Xvfb): the engine's one
line as a notification and on the status line, nothing added, the Hand control left as chosen (the model's
doing, not the hand's), and Run ready again; the same scan then measured when the mask is whole."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from _hand_phantoms import crop
from napari_vbmd.io import write_image

pytestmark = pytest.mark.gui


def test_a_broken_classical_mask_is_refused_in_the_widget_with_nothing_added(
        make_napari_viewer, qtbot, monkeypatch, tmp_path):
    from qtpy.QtCore import Qt

    import napari_vbmd.segmentation.pipeline as pipeline
    import napari_vbmd.widgets._worker as worker

    case = crop(seed=9, hand="left")
    path = write_image(tmp_path / "crop_L.aim", case.image)
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
    n_layers = len(viewer.layers)

    segment_field = pipeline._segment_field

    def combed(scan, *args, **kwargs):  # the classical method's outline, combed by streaks on every slice
        result = segment_field(scan, *args, **kwargs)
        broken = result.mask.data.astype(bool).copy()
        broken[:, :, ::2] = False
        return dataclasses.replace(result, mask=result.mask.with_data(broken.astype(np.uint8)))

    def run():
        qtbot.mouseClick(widget.run_button, Qt.MouseButton.LeftButton)
        qtbot.waitUntil(lambda: not widget.busy, timeout=120000)

    with monkeypatch.context() as patch:
        patch.setattr(pipeline, "_segment_field", combed)
        run()
    [line] = errors
    assert line.count("\n") == 0 and "crop_L.aim" in line and "the mask's sections are broken on" in line
    assert "nothing written: try another model (the default model)" in line
    assert "sections are broken" in widget.status_label.text()
    assert len(viewer.layers) == n_layers and widget.labels_layer is None and widget.run_button.isEnabled()
    assert not hand.marked and hand.source.value == "left (you chose)"

    run()  # the same scan, its mask whole: measured
    assert len(errors) == 1 and widget.labels_layer is not None and len(viewer.layers) == n_layers + 1
    assert "hand: left (you chose)" in widget.status_label.text()
