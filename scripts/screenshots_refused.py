"""Screenshots of the Segment & measure widget on a phantom whose mask the pipeline refuses (docs/workflow.md
"A refused mask, corrected by hand"): the refused mask shown to correct, not measured; then measured once the
slices beyond the joint are erased.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_refused.py [--out docs/images]

The phantom is seed 40039 of the fresh check set (benchmarks/eval_default_model.py,
``broad_held_out_specs(48, 40000)[39]``: a left hand cropped, 0.061 mm voxels, motion grade 3), where the default
model's mask runs out of the scan at both ends, into the proximal phalanx (D100 +16.6 % had it been measured).
The correction is what a person does in the Correct step: at MC2's first slice (its head's tip; here read off the
phantom's truth) "Erase lower slices" erases every slice of the mask past MC2's head, as one operation. Saved:
docs/images/refused_mask.png (the Review step four slices past MC2's head, the phalanx in the mask, "Not
measured") and docs/images/refused_mask_corrected.png (the same slice after the correction, the Correct step with
its tools and the audit trail), 1600 x 1000 each.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

from _qt_events import open_desk, process_events

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from eval_default_model import broad_held_out_specs

    from napari_vbmd.io import write_image
    from napari_vbmd.measure import measure_vbmd
    from napari_vbmd.phantom import generate_phantom

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-refused-shot-"))
    spec = broad_held_out_specs(48, 40000)[39]
    phantom = generate_phantom(spec)
    path = write_image(work / f"heldout_{spec.seed}.aim", phantom.image)
    truth = np.asarray(phantom.truth.data) != 0
    truth_slices = np.flatnonzero(truth.any(axis=(1, 2)))

    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer, widget, app = open_desk(path, "default")
    process_events(app, lambda: not widget.run_tab.hand_runner.busy, settle=0.6)
    widget.run()
    process_events(app, lambda: not widget.busy, settle=0.6)
    if widget.labels_layer is None or widget.result is not None or not widget.session.refusal:
        raise SystemExit(f"the mask of this phantom was not refused: {widget.status_label.text()}")

    def shoot(name: str, z: int, section: str = "review") -> Path:
        for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
            toast.close()
        viewer.reset_view()
        widget.go_to_slice(z)
        widget.show_section(section)
        process_events(app, settle=0.6)
        out = args.out / name
        viewer.window.screenshot(str(out), flash=False, canvas_only=False)
        return out

    beyond = int(truth_slices[0]) - 4 if truth_slices[0] >= 4 else int(truth_slices[-1]) + 4  # in the phalanx
    print("wrote", shoot("refused_mask.png", beyond), "refused:", widget.session.refusal)

    refused = np.asarray(widget.labels_layer.data) != 0
    if truth_slices[-1] < refused.shape[0] - 1 and refused[truth_slices[-1] + 1:].any():
        raise SystemExit("the mask runs on past MC2's other end too: this script erases one side")
    removed = int(refused[:truth_slices[0]].sum())
    widget.go_to_slice(int(truth_slices[0]))  # MC2's first slice (its head's tip), as a person finds it
    widget.correct("erase lower slices")
    process_events(app, lambda: widget.result is not None and not widget.measuring, timeout=120, settle=0.6)
    result = widget.result
    if result is None:
        raise SystemExit(f"the corrected mask was not measured: {widget.status_label.text()}")
    out = shoot("refused_mask_corrected.png", beyond, "correct")
    true_d100 = measure_vbmd(phantom.image, truth.astype(np.uint8)).d100_mg_ha_cm3
    print("wrote", out, f"D100 {result.d100_mg_ha_cm3:.1f} (truth {true_d100:.1f}, "
          f"{100 * (result.d100_mg_ha_cm3 / true_d100 - 1):+.2f} %); removed {removed} voxels; "
          f"check: {widget.session.concern or 'passes'}")
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
