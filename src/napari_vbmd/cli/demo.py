"""`vbmd demo OUT_DIR`: the main job on the bundled phantom, end to end.

Generate a synthetic HR-pQCT scan of the MCP joint with known truth, segment MC2 (with the bundled
phantom-trained network by default, see docs/default-model.md; ``--model classical`` needs no
weights), measure vBMD, compare with the truth, write the mask as a char-127 AIM and a JSON report, and show the result in napari
(--show) or save a screenshot of napari.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from ..errors import VbmdError
from ._output import print_table


def register(subparsers) -> None:
    p = subparsers.add_parser("demo", help="segment and measure a synthetic phantom, show or save the result")
    p.add_argument("out_dir", help="folder for the phantom, mask, report and screenshot")
    p.add_argument("--model", default="default",
                   help="default (the bundled phantom-trained network; the default), classical, or a checkpoint")
    p.add_argument("--seed", type=int, default=2026, help="phantom seed")
    p.add_argument("--hand", choices=["left", "right"], default="right")
    p.add_argument("--show", action="store_true", help="open napari and wait (needs a display)")
    p.add_argument("--no-viewer", action="store_true", help="skip napari entirely (report only)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    from ..evaluation.metrics import dice
    from ..io import write_mask
    from ..measure import measure_vbmd
    from ..phantom import PhantomSpec, generate_phantom, write_phantom
    from ..segmentation.pipeline import segment

    from .._atomic import ensure_output_folder, write_text_atomic

    out = ensure_output_folder(args.out_dir)
    t0 = time.perf_counter()
    phantom = generate_phantom(PhantomSpec(seed=args.seed, hand=args.hand))
    for old in out.glob("phantom*"):  # the demo's own earlier output
        old.unlink()
    paths = write_phantom(phantom, out, "phantom")
    t_phantom = time.perf_counter() - t0
    result = segment(phantom.image, model=args.model)
    mask_path = write_mask(out / "phantom_mc2_mask.aim", result.mask, parent=phantom.image, protect=paths.values())
    measured = measure_vbmd(phantom.image, result.mask)
    truth = phantom.truth_info
    report = {
        "phantom": {k: str(v) for k, v in paths.items()},
        "mask": str(mask_path),
        "model": result.model,
        "device": result.device,
        "runtime": result.runtime,
        "hand": result.hand,
        "hand_source": result.hand_source,
        "hand_confidence": result.hand_confidence,
        "truth_d100_mg_ha_cm3": truth["d100_mg_ha_cm3"],
        "measured": measured.to_dict(profile=False),
        "d100_error_percent": 100.0 * (measured.d100_mg_ha_cm3 - truth["d100_mg_ha_cm3"]) / truth["d100_mg_ha_cm3"],
        "dice_vs_truth": float(dice(phantom.truth.data, result.mask.data)),
        "timings_s": {"phantom": t_phantom, **result.timings},
    }
    write_text_atomic(out / "report.json", json.dumps(report, indent=2), protect=paths.values())
    if not args.no_viewer:
        report["screenshot"] = _show(phantom, result, out, interactive=args.show)
    if args.json:
        json.dump(report, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        m = report["measured"]
        print_table([
            ("phantom", paths["image"]),
            ("model", f"{result.model} on {result.where}"),
            ("hand", result.hand_decision.describe()),
            ("D100 measured (mg HA/cm3)", round(m["d100_mg_ha_cm3"], 2)),
            ("D100 truth (mg HA/cm3)", round(report["truth_d100_mg_ha_cm3"], 2)),
            ("D100 error (%)", round(report["d100_error_percent"], 3)),
            ("Dice vs truth", round(report["dice_vs_truth"], 4)),
            ("slices", m["n_slices"]),
            ("mean slice area (mm2)", round(m["mean_slice_area_mm2"], 2)),
            ("mask (char 127 AIM)", report["mask"]),
            ("report", str(out / "report.json")),
            ("screenshot", report.get("screenshot") or "-"),
        ])
    return 0


def _show(phantom, result, out: Path, interactive: bool) -> str | None:
    try:
        import napari
    except Exception as exc:  # pragma: no cover - napari is a dependency
        raise VbmdError(f"napari cannot start: {exc}") from None
    from ..layers import scan_to_layer_data

    viewer = napari.Viewer(title="napari-vbmd demo: synthetic MCP joint", show=True)
    data, kwargs, _ = scan_to_layer_data(phantom.image, name="phantom (mg HA/cm3)")
    viewer.add_image(data, **kwargs)
    truth = viewer.add_labels(phantom.truth.data, name="truth (MC2)", scale=phantom.image.spacing,
                              translate=phantom.image.origin, opacity=0.35)
    pred = viewer.add_labels(result.mask.data, name=f"segmentation ({result.model})",
                             scale=phantom.image.spacing, translate=phantom.image.origin)
    pred.contour = 2
    truth.visible = False
    if result.slice_range is not None:
        viewer.dims.set_point(0, phantom.image.origin[0] + phantom.image.spacing[0] * sum(result.slice_range) / 2)
    viewer.reset_view()
    if interactive:
        napari.run()
        return None
    shot = out / "demo.png"
    viewer.screenshot(str(shot), canvas_only=False)
    viewer.close()
    return str(shot)
