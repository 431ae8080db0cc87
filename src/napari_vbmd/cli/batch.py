"""`vbmd batch IN OUT`: segment and measure every scan in a folder, locally or on a Dask cluster."""
from __future__ import annotations

import sys

from ._output import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "batch",
        help="segment and measure every scan in a folder (resumable; local or Dask cluster)",
        description="Find the scans in IN (AIM, ISQ, NIfTI files and DICOM series folders; masks and "
        "side files are left out), segment MC2 and measure vBMD in each, and write OUT/masks/, a JSON "
        "record per case in OUT/cases/, OUT/cohort.csv and OUT/batch.json. A rerun skips the cases "
        "already done with the same input, model and settings. Exit code 1 when any case failed.",
    )
    p.add_argument("input", metavar="IN", help="folder holding the scans (searched recursively)")
    p.add_argument("output", metavar="OUT", help="folder for masks, records and the cohort CSV")
    p.add_argument("--model", default="default",
                   help="default (bundled) | classical (no weights) | PATH to a checkpoint (NAME.json or its folder)")
    p.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N, mps")
    p.add_argument("--workers", type=int,
                   help="local worker processes (default: one per 2 cores and 4 GB; 1 on a GPU); "
                   "0 = no cluster, one case after the other in this process")
    p.add_argument("--threads-per-worker", type=int, default=1,
                   help="cases a local worker runs at once (default 1: memory per case = worker memory)")
    p.add_argument("--memory-limit", default="auto",
                   help="memory per local worker, e.g. 6GB (default auto: the machine's memory / workers); "
                   "a worker over it is restarted and its case fails")
    p.add_argument("--torch-threads", type=int,
                   help="CPU threads per case for inference and the slice-by-slice steps (default: cores / workers)")
    p.add_argument("--scheduler", metavar="ADDRESS",
                   help="use an existing Dask scheduler, e.g. tcp://host:8786 or the file of `dask scheduler "
                   "--scheduler-file`, instead of a local cluster "
                   "(IN, OUT and the model must be at the same paths on every worker)")
    p.add_argument("--mask-format", default="auto", choices=["auto", "aim", "nii.gz", "nii", "tif"],
                   help="auto: .aim for AIM/ISQ scans, .nii.gz for NIfTI and DICOM")
    p.add_argument("--hand", default="auto", choices=["auto", "left", "right"],
                   help="hand side of every scan in IN; auto (default): the manifest's hand column, else each "
                   "file's header, else found in its image (whole-hand fields); a scan none of these decides fails alone")
    p.add_argument("--manifest", metavar="CSV",
                   help="a CSV naming scans (column file or image, relative to the CSV or to IN; or case) and their "
                   "hand (column hand: left, right or empty), e.g. a phantom cohort's cohort.csv")
    p.add_argument("--voi-mm", type=float, help="keep a standard VOI of this length (mm) proximal from MC2's joint surface")
    p.add_argument("--hole-filling", default="fill", choices=["fill", "active_contour", "none"])
    p.add_argument("--units", choices=["native", "hu", "mg_ha_cm3"],
                   help="what the values of files without calibration (NIfTI, DICOM) are")
    p.add_argument("--slope", type=float, help="density = value * SLOPE + INTERCEPT (mg HA/cm3), for uncalibrated files")
    p.add_argument("--intercept", type=float, help="see --slope")
    p.add_argument("--rehash", action="store_true",
                   help="decide what is up to date by the inputs' sha256 (reads every file) rather than by "
                   "their size and modification time")
    p.add_argument("--json", action="store_true", help="print the summary (with the table) as JSON")
    p.set_defaults(func=run)


class _Progress:
    """A bar on a terminal; one line per case otherwise (logs of cluster jobs)."""

    def __init__(self):
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=0, desc="batch", unit="case", file=sys.stderr)

    def __call__(self, done: int, total: int, message: str) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.set_postfix_str(message[:60])
            self.bar.refresh()
            if "FAILED" in message:
                self.bar.write(message, file=sys.stderr)
        else:
            print(f"[{done}/{total}] {message}", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def run(args) -> int:
    from ..batch import BatchSettings, run_batch
    from ..errors import VbmdError

    if args.slope is not None and args.units is not None:
        raise VbmdError("give either --units or --slope/--intercept, not both")
    from ..segmentation.settings import SegmentSettings

    segmentation = SegmentSettings(model=args.model, device=args.device, hand=args.hand, voi_mm=args.voi_mm,
                                   hole_filling=args.hole_filling, threads=args.torch_threads)
    settings = BatchSettings(segmentation, mask_format=args.mask_format, units=args.units, slope=args.slope,
                             intercept=args.intercept)
    progress = _Progress()
    try:
        summary = run_batch(
            args.input, args.output, settings, workers=args.workers, threads_per_worker=args.threads_per_worker,
            scheduler=args.scheduler, memory_limit=args.memory_limit, progress=progress,
            rehash=args.rehash, manifest=args.manifest,
        )
    finally:
        progress.close()
    if args.json:
        print_json(summary.to_dict())
    else:
        _print_summary(summary)
    return 1 if summary.failed else 0


def _print_summary(summary) -> None:
    rows = summary.table
    width = max([len(str(r["case"])) for r in rows] + [4])
    print(f"{'case'.ljust(width)}  {'status':7} {'D100':>8} {'SD':>7} {'slices':>6}  {'hand':<16}  note")
    for r in rows:
        d100 = f"{r['d100_mg_ha_cm3']:.1f}" if r["d100_mg_ha_cm3"] is not None else "-"
        sd = f"{r['sd_mg_ha_cm3']:.1f}" if r["sd_mg_ha_cm3"] is not None else "-"
        slices = str(r["n_slices"]) if r["n_slices"] is not None else "-"
        note = r["error"] if r["status"] != "ok" else ("skipped (up to date)" if r["this_run"] == "skipped" else "")
        status = r["status"]
        hand = f"{r['hand']} ({r['hand_source']})" if r.get("hand") else "-"
        print(f"{str(r['case']).ljust(width)}  {status:7} {d100:>8} {sd:>7} {slices:>6}  {hand:<16}  {note}")
    print(f"\n{summary.processed} processed, {summary.skipped} skipped, {summary.failed} failed "
          f"of {summary.total} in {summary.elapsed_s:.1f} s ({summary.workers}); "
          f"{len(summary.ignored)} files left out (see batch.json)")
    print(f"cohort table: {summary.output}/cohort.csv")
