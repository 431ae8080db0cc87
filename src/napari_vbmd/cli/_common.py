"""Arguments several commands share: what an uncalibrated scan's values mean."""
from __future__ import annotations

from ..io import read_scan
from ..scan import Scan, apply_user_calibration


def add_calibration_arguments(parser) -> None:
    group = parser.add_argument_group("calibration of files that carry none (TIFF, NIfTI, DICOM)")
    group.add_argument("--units", choices=["native", "hu", "mg_ha_cm3"], help="what the scan's values are")
    group.add_argument("--slope", type=float, help="density = value * SLOPE + INTERCEPT (mg HA/cm3)")
    group.add_argument("--intercept", type=float, help="see --slope")


def read_image_argument(args, path) -> Scan:
    scan = read_scan(path)
    return apply_user_calibration(scan, units=args.units, slope=args.slope, intercept=args.intercept)
