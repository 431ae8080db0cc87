"""Screenshots of the Segment & measure widget on a file that says neither what its values are nor
its voxel size (a bare TIFF), for docs/workflow.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_values.py [--out docs/images]

Writes a phantom's integers to a TIFF without units or resolution, opens it, and saves the napari
window (1600 x 1000) as docs/images/workflow_values_asked.png (the Values and Voxel size rows, the
Hand line waiting for them) and workflow_values_results.png (given, run with the bundled model
when installed, else the classical method; the Results with Calibration and Voxel size).
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _qt_events import process_events

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)

    import warnings

    import numpy as np
    import napari
    import tifffile
    from qtpy.QtWidgets import QApplication

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    from napari_vbmd.phantom import PhantomSpec, generate_phantom
    from napari_vbmd.segmentation.models import DEFAULT_CHECKPOINT

    model = "default" if DEFAULT_CHECKPOINT.with_suffix(".json").is_file() else "classical"
    args.out.mkdir(parents=True, exist_ok=True)
    phantom = generate_phantom(PhantomSpec(seed=11, n_slices=72, spacing_mm=0.123))
    path = Path(tempfile.mkdtemp(prefix="vbmd-values-")) / "patient11_R.tif"
    tifffile.imwrite(path, np.asarray(phantom.image.data))

    viewer = napari.Viewer(show=True)
    viewer.window.resize(1600, 1000)
    viewer.open(str(path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    app = QApplication.instance()

    def shot(name):
        from napari._qt.dialogs.qt_notification import NapariQtNotification

        process_events(app, settle=0.6)
        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        process_events(app, settle=0.3)
        target = args.out / f"workflow_{name}.png"
        viewer.window.screenshot(str(target), flash=False, canvas_only=False)
        print("wrote", target)

    form = widget.run_tab
    form.model.value = model
    form.device.value = "cpu"
    viewer.reset_view()
    shot("values_asked")

    for size in form.voxel_sizes:
        size.value = 0.123
    form.values.value = "value × slope + intercept"
    form.slope.value = phantom.image.calibration.density_per_native
    form.intercept.value = phantom.image.calibration.density_intercept
    form.hand.choice.value = "right"
    widget.run()
    process_events(app, lambda: not widget.busy, timeout=300)
    if widget.labels_layer is None:
        raise SystemExit(f"segmentation failed: {widget.status_label.text()}")
    widget.show_section("review")
    shot("values_results")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
