"""`vbmd evaluate`: predicted masks against reference masks over many scans, with a report."""
from __future__ import annotations

import sys
from pathlib import Path

from ..errors import VbmdError
from ._common import add_calibration_arguments, read_image_argument
from ._output import print_json, print_table
from . import EXIT_FAILED, EXIT_OK


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="compare predicted masks with reference masks: metrics, vBMD agreement, HTML/PDF report",
        description="Evaluate predicted masks against reference masks. Cases come from folders matched by case id "
        "(file name without extension and without a trailing _mask/_seg/_pred/... word) or from a CSV with columns "
        "case,image,reference,predicted[,probability]. Writes evaluation_cases.csv, evaluation_slices.csv, "
        "evaluation_report.html and evaluation_report.pdf into the output folder. Exit code 1 when any case failed.",
    )
    p.add_argument("--cases", help="CSV with columns case,image,reference,predicted[,probability]")
    p.add_argument("--images", help="folder of scans (AIM, ISQ, NIfTI, TIFF, DICOM sub-folders)")
    p.add_argument("--reference", help="folder of reference (expert) masks")
    p.add_argument("--predicted", help="folder of predicted masks")
    p.add_argument("--probability", help="folder of probability maps (optional; gives the AUC)")
    p.add_argument("-o", "--output", required=True, help="folder for the CSVs and the report (created if missing)")
    p.add_argument("--title", default="Segmentation evaluation", help="report title")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_calibration_arguments(p)
    p.set_defaults(func=run)


def _progress():
    if not sys.stderr.isatty():
        return None
    def update(step, total, message):
        sys.stderr.write(f"\r[{step}/{total}] {message}\033[K")
        if step == total:
            sys.stderr.write("\n")
        sys.stderr.flush()
    return update


def run(args) -> int:
    from ..evaluation.report import write_report
    from ..evaluation.study import cases_from_csv, cases_from_folders, evaluate_cases, summarize

    folders = [args.images, args.reference, args.predicted]
    if args.cases:
        if any(folders) or args.probability:
            raise VbmdError("give either --cases CSV or --images/--reference/--predicted folders, not both")
        from .._atomic import require_regular_file

        cases = cases_from_csv(require_regular_file(args.cases))
    elif all(folders):
        cases = cases_from_folders(args.images, args.reference, args.predicted, args.probability)
    else:
        raise VbmdError("give --cases CSV, or all three of --images, --reference and --predicted")
    out_dir = Path(args.output)
    if out_dir.exists() and not out_dir.is_dir():
        raise VbmdError("output path exists and is not a folder", out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbmdError(f"cannot create output folder ({exc.strerror})", out_dir) from None

    protect = [p for c in cases for p in (c.image, c.reference, c.predicted, c.probability) if p is not None]
    if args.cases:
        protect.append(Path(args.cases))
    results = evaluate_cases(cases, load_image=lambda path: read_image_argument(args, path), progress=_progress())
    summary = summarize(results)
    paths = write_report(out_dir, results, title=args.title, protect=protect, summary=summary)
    for failure in summary["failed"]:
        print(f"vbmd evaluate: case {failure['case']} failed: {failure['error']}", file=sys.stderr)
    if args.json:
        payload = {k: v for k, v in summary.items() if k != "d100_agreement"}
        agree = summary["d100_agreement"]
        if agree is not None:
            agree = dict(agree)
            if agree.get("bland_altman"):
                agree["bland_altman"] = {k: v for k, v in agree["bland_altman"].items() if k not in ("means", "differences")}
        payload["d100_agreement"] = agree
        payload["files"] = {k: str(v) for k, v in paths.items()}
        print_json(payload)
    else:
        m = summary["metrics"]
        def mean_sd(key, digits):
            d = m[key]
            if not d["n"]:
                return "-"
            sd = f" ({d['sd']:.{digits}f})" if d["sd"] is not None else ""
            return f"{d['mean']:.{digits}f}{sd}"
        rows = [
            ("cases", f"{summary['n_cases']} ({summary['n_evaluated']} evaluated, {summary['n_failed']} failed)"),
            ("Dice mean (SD)", mean_sd("dice", 4)),
            ("IoU mean (SD)", mean_sd("iou", 4)),
            ("AUC mean (SD)", mean_sd("auc", 4)),
            ("HD95 mm mean (SD)", mean_sd("hd95_mm", 3)),
            ("ASSD mm mean (SD)", mean_sd("assd_mm", 3)),
            ("volume diff % mean (SD)", mean_sd("volume_difference_percent", 2)),
            ("D100 diff mean (SD)", mean_sd("d100_difference", 2)),
        ]
        agree = summary["d100_agreement"]
        if agree:
            ba = agree["bland_altman"]
            rows += [
                ("D100 Pearson r", round(agree["pearson_r"], 4) if agree["pearson_r"] is not None else None),
                ("D100 ICC(2,1)", round(agree["icc"]["ICC(2,1)"]["value"], 4)),
                ("D100 bias pred-ref", round(ba["bias"], 3)),
                ("D100 limits of agreement", f"{ba['loa_low']:.3f} to {ba['loa_high']:.3f}"),
            ]
        rows += [(name, str(path)) for name, path in paths.items()]
        print_table(rows)
    return EXIT_FAILED if summary["n_failed"] else EXIT_OK
