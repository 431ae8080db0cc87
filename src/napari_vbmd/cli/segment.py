"""`vbmd segment IMAGE -o MASK`: segment MC2, write the mask, print vBMD and timings."""
from __future__ import annotations

import sys
import time

from ..scan import calibration_line, spacing_line
from ._common import add_calibration_arguments, positive_int, read_image_argument
from ._output import print_json, print_table, vbmd_rows


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "segment",
        help="segment the second metacarpal (MC2) and measure its vBMD",
        description="Segment MC2 in a scan, write the mask (format by extension: .aim as char 127 with "
        "the scan's processing log, .nii/.nii.gz, .tif) and print the vBMD of the mask.",
    )
    p.add_argument("image", help="greyscale scan (AIM, ISQ, DICOM folder, NIfTI, TIFF)")
    p.add_argument("-o", "--output", required=True, help="mask to write (.aim, .nii.gz, .nii, .tif)")
    p.add_argument(
        "--model", default="default",
        help="default (bundled, phantom-trained) | classical (no weights) | unet2d | unet3d (need your own "
        "trained weights) | PATH to a checkpoint (NAME.json or its folder)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--hand", default="auto", choices=["auto", "left", "right"],
                   help="hand side; auto (default): from the file's header, else found in the image (a whole-hand "
                   "field of view); when neither tells, nothing is written and the command asks for --hand")
    p.add_argument("--slices", help="segment only slices A:B (0-based, B excluded)")
    p.add_argument("--voi-mm", type=float, help="keep a standard VOI of this length (mm) proximal from MC2's joint surface")
    p.add_argument("--threads", type=positive_int,
                   help="CPU threads for inference and the slice-by-slice steps (at least 1; default: all)")
    p.add_argument("--hole-filling", default="fill", choices=["fill", "active_contour", "none"],
                   help="fill = exact per-slice filling (default); active_contour = the study's option")
    p.add_argument("--boundary-band", type=float, metavar="MM",
                   help="move the mask's boundary, within MM of where the network put it, onto the scan's "
                   "half-maximum edge; 0 keeps the network's boundary; default: the model's own setting")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_calibration_arguments(p)
    p.set_defaults(func=run)


def _progress_bar():
    if not sys.stderr.isatty():
        return None, lambda: None
    from tqdm import tqdm

    bar = tqdm(total=1, desc="segment", unit="step", file=sys.stderr, leave=False)

    def update(step, total, message):
        bar.total = total
        bar.n = step
        bar.set_postfix_str(message)
        bar.refresh()

    return update, bar.close


def run(args) -> int:
    from ..io import write_mask
    from ..measure import measure_vbmd
    from ..segmentation.models import resolve
    from ..segmentation.pipeline import run as run_segmentation
    from ..segmentation.settings import SegmentSettings

    start = time.perf_counter()
    settings = SegmentSettings(
        model=resolve(args.model), device=args.device, hand=args.hand, slice_range=args.slices, voi_mm=args.voi_mm,
        threads=args.threads, hole_filling=args.hole_filling, boundary_band_mm=args.boundary_band,
    )  # a bad setting or an unknown model is refused before the scan is read
    t = time.perf_counter()
    image = read_image_argument(args, args.image)
    read_s = time.perf_counter() - t
    progress, close = _progress_bar()
    try:
        result = run_segmentation(image, settings, progress=progress)
    finally:
        close()
    t = time.perf_counter()
    written = write_mask(args.output, result.mask, parent=image, protect=(args.image,))
    write_s = time.perf_counter() - t
    timings = {
        "read": read_s,
        "load": result.timings["load"],
        "preprocess": result.timings["preprocess"],
        "inference": result.timings["inference"],
        "postprocess": result.timings["postprocess"],
        "write": write_s,
    }
    timings["total"] = time.perf_counter() - start
    vbmd = measure_vbmd(image, result.mask)
    payload = {
        "image": args.image,
        "calibration": calibration_line(image),
        "voxel_size": spacing_line(image),
        **vbmd.to_dict(),
        "model": result.model,
        "device": result.device,
        "runtime": result.runtime,
        "mask": str(written),
        "hand": result.hand,
        "hand_source": result.hand_source,
        "hand_confidence": result.hand_confidence,
        "hand_reason": result.hand_reason,
        "voi_slices": list(result.voi) if result.voi else None,
        "joint_cut": result.joint_cut,
        "bone_unchecked": result.bone_unchecked,
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
    }
    if args.json:
        print_json(payload)
        return 0
    print_table([
        ("image", args.image),
        ("mask", str(written)),
        ("model", f"{result.model} on {result.where}"),
        ("hand", result.hand_decision.describe()),
        ("hand evidence", result.hand_reason),
        ("calibration", calibration_line(image)),
        ("voxel size", spacing_line(image)),
        *vbmd_rows(vbmd),
        *([("joint", result.joint_cut["description"])] if result.joint_cut else []),
        *([("MC2", result.bone_unchecked)] if result.bone_unchecked else []),
        ("time (s)", ", ".join(f"{k} {v:.2f}" for k, v in timings.items())),
    ])
    return 0
