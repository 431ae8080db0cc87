"""`vbmd measure IMAGE MASK`: vBMD (D100) of a scan under a mask."""
from __future__ import annotations

import sys

from ..io import read_mask
from ..measure import measure_vbmd
from ..scan import calibration_line
from ._common import add_calibration_arguments, read_image_argument
from ._output import print_json, print_table, vbmd_rows


def register(subparsers) -> None:
    p = subparsers.add_parser("measure", help="measure vBMD of a scan inside a mask")
    p.add_argument("image", help="greyscale scan (AIM, ISQ, DICOM folder, NIfTI, TIFF)")
    p.add_argument("mask", help="mask (AIM, GOBJ, NIfTI, TIFF) of the same scan")
    p.add_argument("--slices", help="measure only slices FIRST:LAST (0-based, LAST excluded)")
    p.add_argument("--allow-other-scan", action="store_true",
                   help="measure a mask whose file names another measurement (patient, measurement index, "
                   "original ISQ) than the scan's; refused otherwise, and recorded in the output")
    p.add_argument("--profile", action="store_true", help="also print the per-slice profile")
    p.add_argument("--json", action="store_true", help="print JSON (always includes the profile)")
    add_calibration_arguments(p)
    p.set_defaults(func=run)


def parse_slice_range(text: str | None):
    from ..errors import VbmdError

    if not text:
        return None
    try:
        first, last = (int(v) for v in text.split(":"))
    except ValueError:
        raise VbmdError(f"slice range must be FIRST:LAST, got {text!r}") from None
    if first >= last:
        raise VbmdError(f"slice range {text} is empty or reversed: FIRST must be below LAST (e.g. {last}:{first})"
                        if first > last else f"slice range {text} is empty: FIRST must be below LAST")
    return first, last


def run(args) -> int:
    slices = parse_slice_range(args.slices)
    image = read_image_argument(args, args.image)
    mask = read_mask(args.mask)
    result = measure_vbmd(image, mask, slices=slices, allow_other_scan=args.allow_other_scan)
    if args.json:
        print_json({"image": args.image, "mask": args.mask, "calibration": calibration_line(image),
                    "spacing_mm": list(image.spacing), **result.to_dict()})
        return 0
    rows = [
        ("image", args.image),
        ("mask", args.mask),
        ("calibration", calibration_line(image)),
        *vbmd_rows(result),
    ]
    rows += [("note", note) for note in result.notes]
    print_table(rows)
    if args.profile:
        sys.stdout.write("\nslice  area_mm2  density_mg_ha_cm3\n")
        p = result.profile
        for z, a, d in zip(p.slice_index, p.area_mm2, p.density_mg_ha_cm3):
            sys.stdout.write(f"{z:5d}  {a:8.2f}  {d:10.2f}\n")
    return 0
