"""Screenshots of the blinded rating mode for docs/rating.md (run under Xvfb):

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_rating.py

Makes a three-case study from small synthetic phantoms (contour A the truth, contour B the truth
dilated or eroded), rates it as "Demo rater" through the widget and writes
docs/images/rating_case.png, rating_answered.png, rating_done.png, rating_analysis.png and
rating_preference.png.
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

import numpy as np  # noqa: E402

OUT = REPO / "docs" / "images"


def settle(app, rounds: int = 30) -> None:
    for _ in range(rounds):
        app.processEvents()


def wait_loaded(widget, app) -> None:
    """The rating widget reads each case in a worker thread."""
    import time

    deadline = time.monotonic() + 120
    while widget.loading and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    settle(app)


def zoom_on_contours(viewer) -> None:
    """Centre the camera on the contours of the current slice, with some margin."""
    masks = [np.asarray(layer.data) for layer in viewer.layers if layer.name.startswith("Contour")]
    scan = viewer.layers["Scan"]
    z = int(round((viewer.dims.point[0] - scan.translate[0]) / scan.scale[0]))
    both = np.logical_or(*[m[z] for m in masks])
    ys, xs = np.nonzero(both)
    centre_y = scan.translate[1] + scan.scale[1] * (ys.min() + ys.max()) / 2
    centre_x = scan.translate[2] + scan.scale[2] * (xs.min() + xs.max()) / 2
    viewer.camera.center = (viewer.camera.center[0], centre_y, centre_x)
    extent = max(np.ptp(ys), np.ptp(xs)) * scan.scale[1] * 1.6
    canvas = viewer.window._qt_viewer.canvas.native
    viewer.camera.zoom = min(canvas.width(), canvas.height()) / extent


def close_toasts(app) -> None:
    """napari's notification toasts (e.g. its PyQt5 deprecation notice) would cover the canvas."""
    from qtpy.QtWidgets import QWidget

    for top in app.topLevelWidgets():
        for w in [top, *top.findChildren(QWidget)]:
            if type(w).__name__ == "NapariQtNotification":
                w.close()


def save(viewer, name: str, app) -> Path:
    settle(app)
    close_toasts(app)
    settle(app)
    path = OUT / name
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print("wrote", path)
    return path


def main() -> int:
    import warnings

    # napari shows this one as a toast over the canvas; it says nothing about the plugin
    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    from qtpy.QtWidgets import QApplication

    from _rating_helpers import make_phantom_study_inputs
    from napari_vbmd.rating import create_study
    from napari_vbmd.widgets.rating import RatingWidget, StudyAnalysisWidget

    OUT.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rating-shots-"))
    try:
        manifest, _ = make_phantom_study_inputs(work / "inputs", n_cases=3, n_slices=32)
        study = create_study(manifest, work / "study")

        viewer = napari.Viewer(title="napari", show=True)
        app = QApplication.instance()
        viewer.window._qt_window.resize(1500, 900)
        widget = RatingWidget(viewer)
        viewer.window.add_dock_widget(widget, name="Rate contours (blinded study)", area="right")
        widget.folder_edit.setText(str(study.folder))
        widget.rater_edit.setText("Demo rater")
        widget.start()
        wait_loaded(widget, app)
        zoom_on_contours(viewer)
        save(viewer, "rating_case.png", app)

        widget.confidence_combo.setCurrentIndex(4)
        widget.comment_edit.setText("lower edge follows the cortex better")
        widget.choose("contour_1")
        save(viewer, "rating_answered.png", app)
        for choice in ("equal", "contour_2"):
            widget.go_next()
            wait_loaded(widget, app)
            widget.choose(choice)
        widget.go_next()
        wait_loaded(widget, app)
        save(viewer, "rating_done.png", app)
        viewer.close()

        owner_viewer = napari.Viewer(title="napari", show=True)
        owner_viewer.window._qt_window.resize(1500, 900)
        owner = StudyAnalysisWidget(owner_viewer)
        dock = owner_viewer.window.add_dock_widget(owner, name="Rating study analysis (owner)", area="right")
        from qtpy.QtCore import Qt

        owner_viewer.window._qt_window.resizeDocks([dock], [820], Qt.Horizontal)
        owner.folder_edit.setText(str(study.folder))
        owner.analyze()
        save(owner_viewer, "rating_analysis.png", app)
        shutil.copyfile(owner.summary["outputs"]["plot"], OUT / "rating_preference.png")
        print("wrote", OUT / "rating_preference.png")
        owner_viewer.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
