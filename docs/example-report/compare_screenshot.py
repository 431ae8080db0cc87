"""Screenshot of the compare-masks widget for docs/images/evaluation_compare.png.

    xvfb-run -a -s "-screen 0 1600x1000x24" python docs/example-report/compare_screenshot.py OUT.png
"""
from __future__ import annotations

import sys

import numpy as np
from scipy import ndimage

from napari_vbmd.layers import scan_to_layer_data
from napari_vbmd.phantom import PhantomSpec, generate_phantom


def main(out: str) -> None:
    import warnings

    warnings.filterwarnings("ignore")  # keep napari's deprecation notices off the screenshot
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_vbmd.widgets.compare import CompareMasksWidget

    phantom = generate_phantom(PhantomSpec(seed=104, n_slices=40, spacing_mm=0.164, erosions=2))
    truth = phantom.truth.data != 0
    # a "network" mask two voxels off to one side and one voxel too tight along y
    predicted = ndimage.binary_erosion(np.roll(truth, 2, axis=2), np.ones((1, 3, 1), bool))

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1500, 900)
    data, kwargs, _ = scan_to_layer_data(phantom.image, name="case05 scan")
    viewer.add_image(data, **kwargs)
    spacing, origin = phantom.image.spacing, phantom.image.origin
    viewer.add_labels(truth.astype(np.uint8), name="expert mask", scale=spacing, translate=origin, opacity=0.0)
    viewer.add_labels(predicted.astype(np.uint8), name="network mask", scale=spacing, translate=origin, opacity=0.0)
    widget = CompareMasksWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Compare masks", area="right")
    viewer.layers.selection.active = viewer.layers["case05 scan"]
    widget._refresh_choices()
    widget.reference.value = "expert mask"
    widget.predicted.value = "network mask"
    widget.compare()
    app = QApplication.instance()
    while widget.result is None or not widget.compare_button.isEnabled():
        app.processEvents()
    zs = np.flatnonzero(truth.any(axis=(1, 2)))
    z = int(zs[len(zs) * 2 // 3])
    viewer.dims.set_point(0, origin[0] + z * spacing[0])
    ys, xs = np.nonzero(truth[z])
    viewer.scene.camera.center = (origin[0] + z * spacing[0], origin[1] + ys.mean() * spacing[1],
                                  origin[2] + xs.mean() * spacing[2])
    viewer.scene.camera.zoom = 20
    for _ in range(20):
        app.processEvents()
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    for _ in range(20):
        app.processEvents()
    viewer.screenshot(out, canvas_only=False)
    viewer.close()


if __name__ == "__main__":
    main(sys.argv[1])
