"""`vbmd info PATH`: shape, voxel size, position and calibration of a scan or mask."""
from __future__ import annotations

from ..io import detect_format, read_scan
from ..io.aim import validate_aim_header
from ._output import print_json, print_table


def register(subparsers) -> None:
    p = subparsers.add_parser("info", help="describe a scan or mask file (or DICOM folder)")
    p.add_argument("path", help="AIM, ISQ, GOBJ, DICOM folder, NIfTI or TIFF")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def run(args) -> int:
    scan = read_scan(args.path)
    info = scan.describe()
    if detect_format(args.path) == "aim":
        facts = validate_aim_header(args.path)
        info["aim"] = {
            "version": facts["version"],
            "type": facts["type_name"],
            "position": list(facts["position_xyz"]),
            "offset": list(facts["offset_xyz"]),
        }
    decision = _hand(scan)
    if decision is not None:
        info["hand_detected"] = decision.to_dict()
    if args.json:
        print_json(info)
        return 0
    cal = info["calibration"]
    spacing = info["spacing_mm"]
    if spacing == "unknown":
        spacing = f"unknown ({info['spacing_note'] or 'the file does not state it'}; give --spacing Z Y X to measure)"
    rows = [
        ("file", info["path"]),
        ("format", info["format"]),
        ("kind", info["kind"]),
        ("shape (z, y, x)", info["shape"]),
        ("spacing mm (z, y, x)", spacing),
        ("origin mm (z, y, x)", info["origin_mm"]),
        ("dtype", info["dtype"]),
        ("units", info["unit"]),
        ("hand", _hand_text(scan, decision)),
        ("calibration", "none" if cal is None else
         f"slope {cal['density_slope']}, intercept {cal['density_intercept']}, "
         f"mu scaling {cal['mu_scaling']}, mu water {cal['mu_water']}"),
    ]
    if info.get("calibration_note"):
        rows.append(("calibration note", info["calibration_note"]))
    if info["format"] == "isq":
        h = scan.header
        rows.append(("ISQ", f"{' x '.join(map(str, h['dimensions_p']))} voxels over "
                            f"{' x '.join(map(str, h['dimensions_um']))} um (x, y, z); measurement "
                            f"{h['measurement_index']}, patient {h['patient_index']}"))
    if "aim" in info:
        rows.append(("AIM", f"v{info['aim']['version']:03d}, {info['aim']['type']}, position {info['aim']['position']}"))
    print_table(rows)
    return 0


def _hand(scan):
    """What the image says about the hand (one averaged pass; about a second for 1536 x 1536 x 110)
    when the header does not say it; None for masks and scans whose header says it."""
    if scan.kind != "image" or scan.hand is not None:
        return None
    from ..segmentation.hand import detect_hand

    return detect_hand(scan)


def _hand_text(scan, decision) -> str:
    if scan.hand is not None:
        return f"{scan.hand} (header)"
    if decision is None:
        return "unknown"
    if decision.decided:
        return f"{decision.hand} (found in the image, confidence {decision.confidence:.3f})"
    return f"unknown: {decision.reason}"
