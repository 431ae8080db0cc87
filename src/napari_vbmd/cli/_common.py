"""Arguments several commands share: what an uncalibrated scan's values mean, and its voxel size
when the file does not state it."""
from __future__ import annotations

import argparse

from ..io import read_scan
from ..scan import Scan, apply_user_calibration, apply_user_spacing


def positive_int(text: str) -> int:
    """argparse type: a whole number >= 1 (0 and negatives are refused alike)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_calibration_arguments(parser, spacing: bool = True) -> None:
    group = parser.add_argument_group("calibration and voxel size of files that carry none (TIFF, NIfTI, DICOM)")
    group.add_argument("--units", choices=["native", "hu", "mg_ha_cm3"], help="what the scan's values are")
    group.add_argument("--slope", type=float, help="density = value * SLOPE + INTERCEPT (mg HA/cm3)")
    group.add_argument("--intercept", type=float, help="see --slope")
    group.add_argument("--override-calibration", action="store_true",
                       help="let --units/--slope/--intercept replace the calibration the file states itself "
                       "(refused otherwise); the output records the override")
    if spacing:
        group.add_argument("--spacing", type=float, nargs=3, metavar=("Z", "Y", "X"),
                           help="voxel size in mm, for files that do not state it (refused when the file does)")


def read_image_argument(args, path) -> Scan:
    """The scan at ``path`` with the user's calibration and spacing applied; refused when its voxel
    size is still unknown (every command using this measures or segments)."""
    scan = read_scan(path)
    scan = apply_user_spacing(scan, getattr(args, "spacing", None))
    scan = apply_user_calibration(scan, units=args.units, slope=args.slope, intercept=args.intercept,
                                  override=getattr(args, "override_calibration", False))
    scan.require_spacing(f"vbmd {getattr(args, 'command', '')}".strip())
    return scan
