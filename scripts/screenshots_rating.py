"""Screenshots of the blinded rating mode for docs/rating.md (run under Xvfb), at two window sizes:

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_rating.py [--out docs/images]

Makes a three-case study from small synthetic phantoms (contour A the truth, contour B the truth
dilated or eroded; the owner's mapping kept outside the study folder), rates it as "Demo rater"
through the widget and writes docs/images/rating_case.png, rating_alone.png, rating_answered.png,
rating_done.png, rating_refused.png, rating_analysis.png (1600 x 1000, and the same names ending in
_1280x800) and rating_preference.png.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from _qt_events import process_events

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "tests"))

SIZES = ((1600, 1000, ""), (1280, 800, "_1280x800"))


def close_toasts(viewer) -> None:
    """napari's notification toasts would cover the canvas."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()


def save(viewer, name: str, app, out: Path) -> Path:
    process_events(app, settle=0.3)
    close_toasts(viewer)
    process_events(app, settle=0.3)
    path = out / name
    viewer.window.screenshot(str(path), flash=False, canvas_only=False)
    print("wrote", path)
    return path


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)
    out = args.out

    import warnings

    # napari shows this one as a toast over the canvas; it says nothing about the plugin
    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    import napari
    from qtpy.QtWidgets import QApplication

    from _rating_helpers import make_phantom_study_inputs
    from napari_vbmd.rating import create_study

    out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="rating-shots-"))
    try:
        manifest, _ = make_phantom_study_inputs(work / "inputs", n_cases=3, n_slices=32)
        for width, height, suffix in SIZES:
            owner = work / f"owner{suffix}"
            owner.mkdir()
            study = create_study(manifest, work / f"study{suffix}", mapping_path=owner / "mapping.json")
            unsafe = create_study(manifest, work / f"shared_with_the_key{suffix}")
            # the key inside the study folder, as studies made before the owner folder kept it
            (unsafe.folder / "owner").mkdir()
            key = work / f"shared_with_the_key{suffix}-owner" / "mapping.json"
            key.rename(unsafe.folder / "owner" / "mapping.json")

            viewer = napari.Viewer(title="napari", show=True)
            app = QApplication.instance()
            viewer.window.resize(width, height)
            _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Rate contours (blinded study)")
            widget.folder.line_edit.value = str(unsafe.folder)
            widget.rater.value = "Demo rater"
            widget.start()
            save(viewer, f"rating_refused{suffix}.png", app, out)

            widget.folder.line_edit.value = str(study.folder)
            widget.start()
            process_events(app, lambda: not widget.loading, timeout=120, settle=0.3)
            save(viewer, f"rating_case{suffix}.png", app, out)
            widget.show_alone(0)  # the key Q
            save(viewer, f"rating_alone{suffix}.png", app, out)
            widget.show_alone(0)

            widget.confidence_combo.setCurrentIndex(4)
            widget.comment_edit.setText("lower edge follows the cortex better")
            widget.choose("contour_1")
            save(viewer, f"rating_answered{suffix}.png", app, out)
            for choice in ("equal", "contour_2"):
                widget.go_next()
                process_events(app, lambda: not widget.loading, timeout=120, settle=0.3)
                widget.choose(choice)
            widget.go_next()
            process_events(app, lambda: not widget.loading, timeout=120, settle=0.3)
            save(viewer, f"rating_done{suffix}.png", app, out)
            viewer.close()

            owner_viewer = napari.Viewer(title="napari", show=True)
            owner_viewer.window.resize(width, height)
            _, analysis = owner_viewer.window.add_plugin_dock_widget("napari-vbmd", "Rating study analysis (owner)")
            analysis.study.line_edit.value = str(study.folder)
            analysis.mapping.line_edit.value = str(owner / "mapping.json")
            analysis.analyze()
            process_events(app, lambda: analysis.summary is not None and not analysis.runner.busy,
                           timeout=120, settle=0.3)
            save(owner_viewer, f"rating_analysis{suffix}.png", app, out)
            if not suffix:
                shutil.copyfile(analysis.summary["outputs"]["plot"], out / "rating_preference.png")
                print("wrote", out / "rating_preference.png")
            owner_viewer.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
