"""Export a reviewed case: the corrected mask for the scanner and for other tools, the vBMD report,
the review status, and a training pair the `vbmd train` command reads as it is.

Files for case ``C`` in the export folder:
``C_mask.aim`` (char 0/127, the scan's processing log plus a line; ready for ``togobj_from_aim``),
``C_mask.nii.gz`` / ``C_mask.tif`` (when asked), ``C_model_mask.<ext>`` (the model's uncorrected
mask, when there is one), ``C_report.json`` and ``C_report.csv`` (one row), ``C_review.json``.
By default they go into a folder of their own beside the scan (``vbmd-export/``). No file the case
reads is ever written over; a file in the way is replaced only when it is this tool's own earlier
export (the case's report lists it with its SHA-256) and the caller says so.
"""
from __future__ import annotations

import csv
import io as _io
import json
from pathlib import Path

import numpy as np

from ._atomic import check_not_input, write_text_atomic
from .correction import CorrectionStats
from .errors import VbmdError
from .layers import native_if_lossless
from .measure import VbmdResult
from .review import ReviewStore, review_path
from .scan import Scan, calibration_line, spacing_line
from .util import input_sha256, sha256_file, timestamp

MASK_FORMATS = {"aim": ".aim", "nifti": ".nii.gz", "tiff": ".tif"}
REPORT_FORMAT = "napari-vbmd-report"


EXPORT_FOLDER = "vbmd-export"  # the default export folder, beside the scan: a folder of the tool's own
PAIR_FORMAT = "napari-vbmd-training-pair"


class ExportExistsError(VbmdError):
    """An earlier export of this tool is in the way; ``paths`` lists its files (replaced only on request)."""

    def __init__(self, paths: list[Path]):
        self.paths = list(paths)
        names = ", ".join(p.name for p in self.paths[:4]) + (" ..." if len(self.paths) > 4 else "")
        super().__init__(f"an earlier export exists ({names}); confirm to overwrite it", self.paths[0].parent)


class NotOurFileError(VbmdError):
    """A file in the way was not written by this tool (or was changed since): it is never replaced."""

    def __init__(self, paths: list[Path], record: str):
        self.paths = list(paths)
        names = ", ".join(p.name for p in self.paths[:3]) + (" ..." if len(self.paths) > 3 else "")
        super().__init__(f"{names} {'is' if len(self.paths) == 1 else 'are'} not napari-vbmd's own export "
                         f"(no {record} here lists {'it' if len(self.paths) == 1 else 'them'} unchanged) and "
                         f"will not be replaced: choose another folder or case name", self.paths[0].parent)


def default_export_folder(scan_source: str | Path | None) -> Path | None:
    """Where a case's export goes unless the user says otherwise: a folder of its own beside the scan."""
    if not scan_source:
        return None
    return Path(scan_source).parent / EXPORT_FOLDER


def file_sha256(path: str | Path | None) -> str | None:
    """:func:`~napari_vbmd.util.input_sha256` of a scan file or DICOM folder (the digest a batch record
    gives the same scan); None when there is no file."""
    if not path or not Path(path).exists():
        return None
    return input_sha256(path)


def _refuse_inputs(targets, protect) -> None:
    """Before anything is written: no target may be a file the case reads, nor lie in a scan's folder
    of files (a DICOM series, whose hash covers every file in it)."""
    for target in targets:
        check_not_input(target, protect)
        for p in protect:
            if p and Path(p).is_dir() and Path(target).resolve().parent == Path(p).resolve():
                raise VbmdError("refusing to write into the scan's own folder of files", target)


def _own_files(record_path: Path, record_format: str, case: str) -> dict[str, str | None] | None:
    """The files an export record of ours lists (name -> SHA-256, None while it was being written),
    or None when ``record_path`` is not such a record for ``case``."""
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != record_format or record.get("case") != case:
        return None
    hashes = record.get("file_sha256") or {}
    return {str(name): hashes.get(str(name)) for name in (record.get("files") or {}).values()}


def _check_in_the_way(paths: dict[str, Path], record_key: str, record_format: str, record_name: str, case: str,
                      overwrite: bool) -> None:
    in_the_way = [p for p in paths.values() if p.exists()]
    if not in_the_way:
        return
    record = paths[record_key]
    own = _own_files(record, record_format, case) if record.exists() else None
    foreign = []
    for path in in_the_way:
        if path == record:
            ours = own is not None
        else:
            ours = own is not None and path.name in own and own[path.name] in (None, file_sha256(path))
        if not ours:
            foreign.append(path)
    if foreign:
        raise NotOurFileError(foreign, record_name)
    if not overwrite:
        raise ExportExistsError(in_the_way)


def export_paths(out_dir: str | Path, case: str, formats=("aim",), with_original: bool = True) -> dict[str, Path]:
    out_dir = Path(out_dir)
    unknown = [f for f in formats if f not in MASK_FORMATS]
    if unknown or not formats:
        raise VbmdError(f"mask formats must be some of {', '.join(MASK_FORMATS)}, got {list(formats)}")
    if not case or any(c in case for c in "/\\") or case.startswith("."):
        raise VbmdError(f"case name {case!r} cannot be a file name")
    paths = {f"mask_{f}": out_dir / f"{case}_mask{MASK_FORMATS[f]}" for f in formats}
    if with_original:
        paths["model_mask"] = out_dir / f"{case}_model_mask{MASK_FORMATS[formats[0]]}"
    paths["report_json"] = out_dir / f"{case}_report.json"
    paths["report_csv"] = out_dir / f"{case}_report.csv"
    paths["review"] = review_path(out_dir, case)
    return paths


def _mask_scan(mask, image: Scan) -> Scan:
    if isinstance(mask, Scan):
        data = mask.data
    else:
        data = np.asarray(mask)
    if data.shape != image.shape:
        raise VbmdError(f"mask shape {data.shape} differs from the scan's {image.shape}")
    return image.with_data((data != 0).astype(np.uint8), kind="mask", unit="unknown")


def build_report(
    case: str,
    image: Scan,
    result: VbmdResult,
    model: str = "",
    device: str = "",
    review: ReviewStore | None = None,
    reviewer: str = "",
    stats: CorrectionStats | None = None,
    provenance: dict | None = None,
    seconds: float | None = None,
    files: dict[str, str] | None = None,
    hand: str | None = None,
    hand_source: str | None = None,
    hand_confidence: float | None = None,
    hand_reason: str | None = None,
) -> dict:
    """The report's content (the JSON file; the CSV holds its flat part).

    ``hand``/``hand_source``: the side the mask was made for and where that came from (a
    :class:`~napari_vbmd.segmentation.pipeline.SegmentationResult`'s); when not given, the scan's
    header's hand (source "header"), else none ("unknown"). ``hand_confidence`` and ``hand_reason``:
    how sure and why (the detector's confidence and evidence when the image decided; 1.0 otherwise)."""
    if hand is None and image.hand is not None:
        hand, hand_source = image.hand, "header"
        hand_confidence, hand_reason = 1.0, f"the file's header says {image.hand}"
    if hand and hand_confidence is None:
        hand_confidence = 1.0 if hand_source in ("argument", "manifest", "header") else None
    return {
        "format": REPORT_FORMAT,
        "case": case,
        "scan_file": image.source,
        "scan_sha256": file_sha256(image.source),
        "model": model,
        "device": device,
        "hand": hand,
        "hand_source": hand_source if hand else None,
        "hand_confidence": hand_confidence if hand else None,
        "hand_reason": (hand_reason or "") if hand else "",
        "calibration": calibration_line(image),
        "voxel_size": spacing_line(image),
        "segmentation_seconds": seconds,
        "review_status": review.status if review else "unreviewed",
        "slices_reviewed": review.counts()["reviewed"] if review else 0,
        "slices_flagged": review.counts()["flagged"] if review else 0,
        "reviewer": reviewer or (review.reviewer if review else ""),
        "exported_at": timestamp(),
        "vbmd": result.to_dict(profile=False),
        "profile": result.to_dict()["profile"],
        "correction": stats.to_dict() if stats else None,
        "mask_provenance": provenance,
        "files": files or {},
    }


CSV_COLUMNS = (
    "case", "scan_file", "scan_sha256", "model", "device", "hand", "hand_source", "hand_confidence", "hand_reason",
    "calibration", "voxel_size", "review_status", "reviewer", "exported_at",
    "d100_mg_ha_cm3", "sd_mg_ha_cm3", "volume_mm3", "n_voxels", "n_slices", "mean_slice_area_mm2",
    "voxels_added", "voxels_removed", "d100_before_mg_ha_cm3", "d100_after_mg_ha_cm3",
    "corrected_by", "corrected_at", "mask_file", "model_mask_refused", "mask_concern",
)


def report_row(report: dict) -> dict:
    vbmd = report["vbmd"]
    correction = report.get("correction") or {}
    provenance = report.get("mask_provenance") or {}
    files = report.get("files") or {}
    row = {key: report.get(key) for key in CSV_COLUMNS}
    row.update({k: vbmd[k] for k in ("d100_mg_ha_cm3", "sd_mg_ha_cm3", "volume_mm3", "n_voxels", "n_slices",
                                     "mean_slice_area_mm2")})
    for key in ("voxels_added", "voxels_removed", "d100_before_mg_ha_cm3", "d100_after_mg_ha_cm3"):
        row[key] = correction.get(key)
    row["corrected_by"] = provenance.get("corrected_by")
    row["corrected_at"] = provenance.get("corrected_at")
    row["model_mask_refused"] = provenance.get("model_mask_refused")  # the pipeline refused the model's mask
    row["mask_concern"] = provenance.get("mask_concern")  # what the checks find wrong with the mask as exported
    row["mask_file"] = next((v for k, v in files.items() if k.startswith("mask_")), None)
    return {k: ("" if v is None else v) for k, v in row.items()}


def _csv_text(rows: list[dict]) -> str:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(CSV_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def export_case(
    out_dir: str | Path,
    case: str,
    image: Scan,
    final_mask,
    result: VbmdResult,
    original_mask=None,
    model: str = "",
    device: str = "",
    review: ReviewStore | None = None,
    reviewer: str = "",
    stats: CorrectionStats | None = None,
    provenance: dict | None = None,
    seconds: float | None = None,
    formats=("aim",),
    overwrite: bool = False,
    protect=(),
    hand: str | None = None,
    hand_source: str | None = None,
    hand_confidence: float | None = None,
    hand_reason: str | None = None,
) -> dict[str, Path]:
    """Write the case's export (see the module docstring); returns the files written by role.

    Nothing is written over a file the case reads (the scan, and ``protect``: e.g. a truth mask
    open beside it). A file in the way that an export report of this case does not list with its
    SHA-256 is not this tool's and is never replaced (NotOurFileError); an earlier export of ours
    is replaced only with ``overwrite`` (else ExportExistsError). The report is written first as
    "being written" and last with the SHA-256 of every file, so an interrupted export is still
    known as ours.
    """
    out_dir = Path(out_dir)
    if not out_dir.is_dir():
        raise VbmdError("export folder does not exist", out_dir)
    formats = tuple(formats)
    paths = export_paths(out_dir, case, formats, with_original=original_mask is not None)
    protect = tuple(p for p in (image.source, *protect) if p)
    _refuse_inputs(paths.values(), protect)
    _check_in_the_way(paths, "report_json", REPORT_FORMAT, "export report", case, overwrite)
    final = _mask_scan(final_mask, image)
    final.header = {k: v for k, v in image.header.items() if k == "processing_log"}
    original = None
    if original_mask is not None:
        original = _mask_scan(original_mask, image)
        original.header = dict(final.header)
    review = review or ReviewStore(case=case, scan=image.source)

    planned = {k: p.name for k, p in paths.items() if k != "report_json"}
    report = build_report(case, image, result, model, device, review, reviewer, stats, provenance, seconds, planned)
    write_text_atomic(paths["report_json"], json.dumps({**report, "complete": False}, indent=2) + "\n", protect)
    written: dict[str, Path] = {}
    for fmt in formats:
        key = f"mask_{fmt}"
        written[key] = _write_mask(paths[key], final, image, protect)
    if original is not None:
        written["model_mask"] = _write_mask(paths["model_mask"], original, image, protect)
    written["review"] = review.save(paths["review"], protect=protect)
    files = {k: p.name for k, p in written.items()}
    report = build_report(case, image, result, model, device, review, reviewer, stats, provenance, seconds,
                          {**files, "report_csv": paths["report_csv"].name}, hand=hand, hand_source=hand_source,
                          hand_confidence=hand_confidence, hand_reason=hand_reason)
    written["report_csv"] = write_text_atomic(paths["report_csv"], _csv_text([report_row(report)]), protect)
    report["file_sha256"] = {p.name: sha256_file(p) for p in written.values()}
    report["complete"] = True
    written["report_json"] = write_text_atomic(paths["report_json"], json.dumps(report, indent=2) + "\n", protect)
    return written


def _write_mask(path: Path, mask: Scan, image: Scan, protect) -> Path:
    from .io import write_mask

    return write_mask(path, mask, parent=image, protect=protect)


def training_pair_paths(train_dir: str | Path, case: str) -> dict[str, Path]:
    train_dir = Path(train_dir)
    return {"image": train_dir / f"{case}.aim", "mask": train_dir / f"{case}_mask.aim",
            "sidecar": train_dir / f"{case}.json"}


def save_training_pair(
    train_dir: str | Path,
    case: str,
    image: Scan,
    final_mask,
    patient: str | None = None,
    provenance: dict | None = None,
    overwrite: bool = False,
    protect=(),
) -> dict[str, Path]:
    """Write ``<case>.aim`` + ``<case>_mask.aim`` (+ ``<case>.json``) into ``train_dir``, the layout
    ``vbmd train DIR`` finds (:func:`napari_vbmd.segmentation.datasets.find_pairs`). The sidecar
    lists the pair with its SHA-256: only a pair it lists is ever replaced (as for exports)."""
    from .io import write_image

    train_dir = Path(train_dir)
    if not train_dir.is_dir():
        raise VbmdError("training folder does not exist", train_dir)
    export_paths(train_dir, case)  # validates the case name
    paths = training_pair_paths(train_dir, case)
    protect = tuple(p for p in (image.source, *protect) if p)
    _refuse_inputs(paths.values(), protect)
    _check_in_the_way(paths, "sidecar", PAIR_FORMAT, "training-pair record", case, overwrite)
    mask = _mask_scan(final_mask, image)
    sidecar = {"format": PAIR_FORMAT, "case": case, "source": image.source, "scan_sha256": file_sha256(image.source),
               "saved_at": timestamp(), "mask_provenance": provenance,
               "files": {"image": paths["image"].name, "mask": paths["mask"].name}}
    if patient:
        sidecar["patient"] = patient
    write_text_atomic(paths["sidecar"], json.dumps({**sidecar, "complete": False}, indent=2) + "\n", protect)
    written = {"image": write_image(paths["image"], native_if_lossless(image), protect=protect)}
    written["mask"] = _write_mask(paths["mask"], mask, image, protect)
    sidecar["file_sha256"] = {p.name: sha256_file(p) for p in written.values()}
    sidecar["complete"] = True
    written["sidecar"] = write_text_atomic(paths["sidecar"], json.dumps(sidecar, indent=2) + "\n", protect)
    return written
