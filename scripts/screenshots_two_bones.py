"""A screenshot of the Segment & measure widget when a mask of two bones is refused, for docs/hand.md.

    xvfb-run -a -s "-screen 0 1600x1000x24" python scripts/screenshots_two_bones.py [--out DIR] [--joined | --broken]

A crop of the training generator's broad variation (seed 40000, a right hand, MC2 beside MC3) is run with the
classical method, which takes MC3 in with MC2 there: the mask is refused with the engine's one line as a
notification and on the status line; since 2026-12-02 (later) the refused mask is shown for a person to correct
and is not measured until then ("Not measured" in the Results), and the Hand control is left as chosen (the
model's doing, not the hand's).
Saved as docs/images/two_bones_refused.png (1600 x 1000). ``--joined``: seed 40007 (a left hand, 61 µm, motion
grade 3), where the bone outline the classical method chose holds MC2 and MC3 joined; saved as
docs/images/two_bones_joined_refused.png. ``--broken``: seed 40001 (a left hand, 82 µm, no motion), where the
classical method's outline broke up on a third of its slices (D100 +45 % had it been measured); saved as
docs/images/broken_outline_refused.png. (A mask carried across a joint space is parted there since 2026-12-02:
scripts/screenshots_joint.py --joint-space.)
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from _qt_events import open_desk, process_events

REPO = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "images")
    kind = parser.add_mutually_exclusive_group()
    kind.add_argument("--joined", action="store_true", help="the joined-metacarpals refusal (seed 40007)")
    kind.add_argument("--broken", action="store_true", help="the broken-outline refusal (seed 40001)")
    args = parser.parse_args(argv)

    import warnings

    warnings.filterwarnings("ignore", message=".*PyQt5 backend is deprecated.*")  # napari's own toast

    from napari_vbmd.io import write_image
    from napari_vbmd.phantom import PhantomSpec, generate_phantom

    args.out.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="vbmd-two-bones-shot-"))
    # benchmarks/eval_default_model.py's 40000, 40007 and 40001
    spec = (dict(seed=40007, hand="left", n_slices=168, spacing_mm=0.061, motion_grade=3, scanner="xtremect2")
            if args.joined else
            dict(seed=40001, hand="left", n_slices=110, spacing_mm=0.082, motion_grade=0, scanner="xtremect2")
            if args.broken else
            dict(seed=40000, hand="right", n_slices=110, spacing_mm=0.082, motion_grade=0, scanner="xtremect1"))
    case = generate_phantom(PhantomSpec(fov="cropped", variation="broad", hand_in_header=False,
                                        **{"erosions": 0, **spec}))
    path = write_image(work / f"patient{spec['seed'] // 1000}.aim", case.image)

    viewer, widget, app = open_desk(path, "classical")
    hand = widget.run_tab.hand
    process_events(app, lambda: hand.auto is not None and not widget.run_tab.hand_runner.busy)
    hand.choice.value = spec["hand"]
    viewer.dims.set_point(0, case.image.shape[0] // 2 * case.image.spacing[0])
    viewer.reset_view()
    widget.run()
    process_events(app, lambda: not widget.busy, settle=1.0)
    if widget.result is not None or not widget.session.refusal or widget.labels_layer is None:
        raise SystemExit("the run was not refused: the classical method's mask was measured")
    shot = args.out / ("two_bones_joined_refused.png" if args.joined else
                       "broken_outline_refused.png" if args.broken else "two_bones_refused.png")
    widget.show_section("review")
    process_events(app, settle=0.6)
    viewer.window.screenshot(str(shot), flash=False, canvas_only=False)
    print("wrote", shot, "|", widget.status_label.text())
    viewer.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
