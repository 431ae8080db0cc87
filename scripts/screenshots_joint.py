"""Screenshot of the Segment & measure widget on a phantom whose mask the pipeline parted from the
proximal phalanx at the joint (docs/segmentation.md "The joint"), for docs/default-model.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_joint.py [--out docs/images] [--joint-space]

The phantom is seed 31000 of the broad held-out set (benchmarks/eval_default_model.py,
``broad_held_out_specs(96, 31000)[0]``: a right hand cropped to MC2 and MC3, 0.082 mm voxels, no
motion), where the shipped networks carry the mask over the joint into the phalanx's base. Saved:
docs/images/joint_cut.png (1600 x 1000): the Review step at the slice the mask was cut at, the
Results with their "Joint" row.

``--joint-space``: seed 40042 of the fresh check set (benchmarks/eval_default_model.py's: a right hand cropped,
82 µm, motion grade 1, one erosion), where the default model's mask runs 1.7 mm on across the joint space into the
proximal phalanx with no waist in its outline; the pipeline parts it at the joint space inside it (D100 +6.5 %
before the cut). Saved: docs/images/joint_space_cut.png, the Review step 0.5 mm proximal of MC2's tip.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from _qt_events import open_desk, process_events

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    parser.add_argument("--joint-space", action="store_true",
                        help="the cut at a joint space inside the mask (fresh seed 40042), not at a waist")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")
    sys.path.insert(0, str(REPO / "benchmarks"))
    from eval_default_model import broad_held_out_specs

    from napari_vbmd.io import write_image
    from napari_vbmd.phantom import PhantomSpec, generate_phantom

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-joint-shot-"))
    if args.joint_space:
        spec = PhantomSpec(seed=40042, hand="right", fov="cropped", n_slices=110, spacing_mm=0.082, motion_grade=1,
                           erosions=1, scanner="xtremect1", variation="broad", hand_in_header=False)
    else:
        spec = broad_held_out_specs(1, 31000)[0]
    path = write_image(work / f"heldout_{spec.seed}.aim", generate_phantom(spec).image)

    from napari._qt.dialogs.qt_notification import NapariQtNotification

    viewer, widget, app = open_desk(path, "default")
    process_events(app, lambda: not widget.run_tab.hand_runner.busy, settle=0.6)
    if args.joint_space:
        widget.run_tab.hand.choice.value = spec.hand
    widget.run()
    process_events(app, lambda: not widget.busy, settle=0.6)
    cut = widget.result is not None and widget.session.segmentation.joint_cut
    if not cut or (cut.get("by") == "joint space") != args.joint_space:
        raise SystemExit(f"no joint cut on this phantom: {widget.status_label.text()}")
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()
    viewer.reset_view()
    # 1.2 mm proximal of the waist, 0.5 mm of MC2's tip: MC2's head, the phalanx gone
    widget.go_to_slice(cut["slice"] + (6 if args.joint_space else 15) * (1 if cut["kept"] == "higher" else -1))
    widget.show_section("review")
    process_events(app, settle=0.6)
    out = args.out / ("joint_space_cut.png" if args.joint_space else "joint_cut.png")
    viewer.window.screenshot(str(out), flash=False, canvas_only=False)
    print("wrote", out, "cut:", cut)
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
