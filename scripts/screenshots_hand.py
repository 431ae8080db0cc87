"""Screenshots of the Segment & measure widget's Hand control on headerless scans, for docs/hand.md
and docs/workflow.md, at two window sizes.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_hand.py [--out docs/images]

Two synthetic phantoms whose headers carry no hand (as a scanner's files): a LEFT hand cropped to
MC2 and MC3, and a whole-hand field of a left hand. The widget is opened as napari opens it, and
saved (docs/images/hand_<step>.png at 1600 x 1000, hand_<step>_1280x800.png):

- crop_ask: the crop chosen: the image cannot tell the hand; the control is marked and a
  notification asks for it (Run is refused until left or right is chosen);
- crop_given: left chosen and run: the control says "last run: left (you chose)";
- crop_result: the Review step: the hand in the figures;
- whole_auto: the whole-hand field chosen: "auto: left (found in the image, confidence …)";
- whole_result: after the run: the hand in the figures, with the image's evidence.
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
    from napari_vbmd.io import write_image
    from napari_vbmd.phantom import PhantomSpec, generate_phantom
    from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT

    model = args.model or ("default" if DEFAULT_CHECKPOINT.with_suffix(".json").is_file() else "classical")
    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-hand-shots-"))
    crop = generate_phantom(PhantomSpec(seed=11, hand="left", n_slices=72, spacing_mm=0.123, hand_in_header=False))
    whole = generate_phantom(PhantomSpec(seed=11, hand="left", fov="full", n_slices=72, spacing_mm=0.123,
                                         hand_in_header=False))
    files = {"crop": write_image(work / "patient11.aim", crop.image),
             "whole": write_image(work / "patient12.aim", whole.image)}
    for width, height, suffix in SIZES:
        take(files, model, width, height, suffix, args.out)
    return 0


def take(files, model, width, height, suffix, out) -> None:
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(width, height)
    app = QApplication.instance()

    def shot(name, step=None, keep_notifications=False):
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        if not keep_notifications:
            for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
                toast.close()
        if step is not None:
            widget.show_section(step)
        process_events(app, settle=0.6)
        path = out / f"hand_{name}{suffix}.png"
        viewer.window.screenshot(str(path), flash=False, canvas_only=False)
        print("wrote", path)

    [crop_layer] = viewer.open(str(files["crop"]), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = model
    widget.run_tab.device.value = "cpu"
    hand = widget.run_tab.hand
    process_events(app, lambda: hand.auto is not None and not widget.run_tab.hand_runner.busy)
    viewer.reset_view()
    shot("crop_ask", "run", keep_notifications=True)  # Run would be refused now, with a notification

    hand.choice.value = "left"
    widget.run()
    process_events(app, lambda: not widget.busy)
    if widget.labels_layer is None:
        raise SystemExit(f"segmentation failed: {widget.status_label.text()}")
    viewer.reset_view()
    middle = widget.result.profile.slice_index[len(widget.result.profile.slice_index) // 2]
    widget.go_to_slice(middle)  # MC2's shaft, where the mask is plain to see
    shot("crop_given", "run")
    shot("crop_result", "review")

    for layer in list(viewer.layers):
        layer.visible = False
    [whole_layer] = viewer.open(str(files["whole"]), plugin="napari-vbmd")  # the newest scan is chosen
    hand.choice.value = "auto"
    process_events(app, lambda: hand.auto is not None and not widget.run_tab.hand_runner.busy)
    viewer.reset_view()
    shot("whole_auto", "run")
    widget.run()
    process_events(app, lambda: not widget.busy)
    if widget.labels_layer is None:
        raise SystemExit(f"segmentation failed: {widget.status_label.text()}")
    widget.go_to_slice(widget.result.profile.slice_index[len(widget.result.profile.slice_index) // 2])
    shot("whole_result", "review")
    viewer.close()


if __name__ == "__main__":
    raise SystemExit(main())
