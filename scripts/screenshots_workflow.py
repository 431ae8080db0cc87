"""Screenshots of the Segment & measure widget in use, for docs/workflow.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_workflow.py [--out docs/images]

Loads a synthetic phantom, segments it (the bundled default model when installed, else the
classical method), steps to a flagged slice in contour view, marks it, corrects it, and exports;
the napari window is saved after each step as docs/images/workflow_*.png.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--model", default=None, help="default when bundled, else classical")
    args = parser.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
    from napari_vbmd.segmentation.registry import DEFAULT_CHECKPOINT
    from napari_vbmd.widgets.workflow import SegmentMeasureWidget

    model = args.model or ("default" if DEFAULT_CHECKPOINT.with_suffix(".json").is_file() else "classical")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-shots-"))
    # grade-3 motion and two erosions: the default model flags a few slices here to show the review
    phantom = generate_phantom(PhantomSpec(seed=11, n_slices=72, spacing_mm=0.123, erosions=2, motion_grade=3))
    image_path = write_phantom(phantom, work, "patient11_R")["image"]

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1560, 960)
    [layer] = viewer.open(str(image_path), plugin="napari-vbmd")
    widget = SegmentMeasureWidget(viewer)
    dock = viewer.window.add_dock_widget(widget, name="Segment & measure", area="right")
    from qtpy.QtCore import Qt

    viewer.window._qt_window.resizeDocks([dock], [560], Qt.Horizontal)
    app = QApplication.instance()

    def settle(seconds=0.6):
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    def wait(predicate, timeout=300):
        end = time.perf_counter() + timeout
        while not predicate() and time.perf_counter() < end:
            app.processEvents()
            time.sleep(0.01)

    def shot(name, section):
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        widget.show_section(section)
        settle()
        path = args.out / f"workflow_{name}.png"
        viewer.window._qt_window.grab().save(str(path))
        print("wrote", path)

    widget.model_combo.setCurrentText(model)
    widget.device_combo.setCurrentText("cpu")
    widget.run()
    wait(lambda: not widget.busy)
    if widget.labels_layer is None:
        raise SystemExit(f"segmentation failed: {widget.status_label.text()}")
    viewer.reset_view()
    middle = widget.result.profile.slice_index[len(widget.result.profile.slice_index) // 2]
    widget.go_to_slice(middle)
    shot("segment", "segment")
    shot("results", "results")

    widget.next_flagged()
    widget.contour_check.setChecked(True)
    widget.reviewer_edit.setText("technician A")
    widget.comment_edit.setText("looked at: tip of the head inside the phalanx's cup")
    widget.mark_slice("reviewed")
    shot("review", "review")

    widget.contour_check.setChecked(False)
    # a slice where the mask lost the marrow (its area falls to under half the slice before) gets
    # the previous slice's mask: the panel shows the voxels added and the D100 before and after
    profile = widget.result.profile
    area = dict(zip(profile.slice_index, profile.area_mm2))
    drops = [z for z in profile.slice_index[1:] if z - 1 in area and area[z] < 0.5 * area[z - 1]]
    z = drops[0] if drops else profile.slice_index[len(profile.slice_index) // 2]
    widget.go_to_slice(z - 1)
    widget.correct("copy slice to next")
    wait(lambda: not widget.measuring, 60)
    settle()
    widget.go_to_slice(z)
    shot("correct", "correct")

    export = work / "export"
    export.mkdir()
    widget.export_dir_edit.setText(str(export))
    widget.nifti_check.setChecked(True)
    widget.mark_case("reviewed")
    widget.export()
    shot("export", "export")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
