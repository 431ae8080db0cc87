"""Screenshots of the Segment & measure widget in use, for docs/workflow.md, at two window sizes.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_workflow.py [--out docs/images]

Loads a synthetic phantom, opens the widget as napari does (Plugins menu, default dock width),
segments it (the bundled default model when installed, else the classical method), steps to a
flagged slice in outline view, marks it, corrects a slice, and exports. The napari window is saved
at each step as docs/images/workflow_<step>.png (1600 x 1000) and workflow_<step>_1280x800.png.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _qt_events import process_events

REPO = Path(__file__).resolve().parents[1]
SIZES = ((1600, 1000, ""), (1280, 800, "_1280x800"))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--model", default=None, help="default when bundled, else classical")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")  # napari's own toast
    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
    from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT

    model = args.model or ("default" if DEFAULT_CHECKPOINT.with_suffix(".json").is_file() else "classical")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-shots-"))
    # grade-3 motion and two erosions: the default model flags a few slices here to show the review
    phantom = generate_phantom(PhantomSpec(seed=11, n_slices=72, spacing_mm=0.123, erosions=2, motion_grade=3))
    for width, height, suffix in SIZES:
        folder = work / f"{width}x{height}"
        folder.mkdir()
        take(write_phantom(phantom, folder, "patient11_R")["image"], model, width, height, suffix, args.out)
    return 0


def take(image_path, model, width, height, suffix, out) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(width, height)
    [layer] = viewer.open(str(image_path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    app = QApplication.instance()

    def shot(name, step=None, pause=0.6):
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        if step is not None:
            widget.show_section(step)
        process_events(app, settle=pause)
        path = out / f"workflow_{name}{suffix}.png"
        viewer.window.screenshot(str(path), flash=False, canvas_only=False)
        print("wrote", path)

    widget.run_tab.model.value = model
    widget.run_tab.device.value = "cpu"
    shot("run", "run")

    # mid-run: the stage, its own count and the bar
    taken = []

    def during(step, total, message):
        if "segmenting: slices" in message and not taken:  # a batch of slices, with its count
            taken.append(message)
            shot("progress", pause=0.05)

    widget.runner.progressed.connect(during)
    widget.run()
    process_events(app, lambda: not widget.busy, timeout=300)
    widget.runner.progressed.disconnect(during)
    if widget.labels_layer is None:
        raise SystemExit(f"segmentation failed: {widget.status_label.text()}")
    viewer.reset_view()
    widget.next_flagged()
    widget.review_tab.outline_check.setChecked(True)
    widget.review_tab.reviewer.value = "technician A"
    widget.review_tab.comment.value = "looked at: tip of the head inside the phalanx's cup"
    widget.mark_slice("reviewed")
    shot("review", "review")

    widget.review_tab.outline_check.setChecked(False)
    # a slice where the mask lost the marrow (its area falls to under half the slice before) gets
    # the previous slice's mask: the panel shows the voxels added and the D100 before and after
    profile = widget.result.profile
    area = dict(zip(profile.slice_index, profile.area_mm2))
    drops = [z for z in profile.slice_index[1:] if z - 1 in area and area[z] < 0.5 * area[z - 1]]
    z = drops[0] if drops else profile.slice_index[len(profile.slice_index) // 2]
    widget.go_to_slice(z - 1)
    widget.correct("copy slice to next")
    widget.go_to_slice(z)
    widget.correct("smooth contour")
    process_events(app, lambda: not widget.measuring, timeout=60)
    shot("correct", "correct")

    widget.export_tab.nifti.value = True
    widget.mark_case("reviewed")
    widget.export()  # into the default folder: vbmd-export/ beside the scan
    shot("export", "export")
    viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
