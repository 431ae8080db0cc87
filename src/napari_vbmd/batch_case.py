"""One case of a batch, on a worker: input hashes, the model, the case's record and mask paths,
segment and measure, the record; a record's row of ``cohort.csv``. (:mod:`napari_vbmd.batch` runs them.)"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import io as _io
import json
import os
import socket
import time
from pathlib import Path
from typing import TYPE_CHECKING

from ._atomic import write_text_atomic
from .errors import CancelledError, VbmdError, one_line
from .util import input_sha256, jsonable, timestamp

if TYPE_CHECKING:
    from .batch import Case, Job

RECORD_FORMAT = "napari-vbmd-batch-case"
RECORD_VERSION = 2  # 2: the hand is never assumed (records of version 1 may say "assumed"): redone

MASK_FORMATS = {"aim": ".aim", "nii.gz": ".nii.gz", "nii": ".nii", "tif": ".tif"}
CSV_COLUMNS = [
    "case", "file", "format", "status", "this_run", "error", "sha256", "model", "model_sha256", "device",
    "hand", "hand_source", "hand_confidence", "bone_unchecked", "calibration", "voxel_size", "d100_mg_ha_cm3",
    "sd_mg_ha_cm3", "n_voxels", "volume_mm3", "n_slices", "mean_slice_area_mm2",
    "first_slice", "last_slice", "mask", "t_hash_s", "t_read_s", "t_preprocess_s", "t_inference_s",
    "t_postprocess_s", "t_write_s", "t_measure_s", "t_total_s", "worker", "finished",
]
FIGURES = ("d100_mg_ha_cm3", "sd_mg_ha_cm3", "n_voxels", "volume_mm3", "n_slices", "mean_slice_area_mm2",
           "first_slice", "last_slice")

TIMINGS = ("hash", "read", "preprocess", "inference", "postprocess", "write", "measure", "total")


# ---------------------------------------------------------------------------------------------
# Hashes and model identity
# ---------------------------------------------------------------------------------------------
def input_stat(path: str | Path) -> dict:
    """Size and modification time of a file, or of a DICOM folder's files (count, total, latest)."""
    path = Path(path)
    try:
        if path.is_dir():
            stats = [p.stat() for p in path.iterdir() if p.is_file() and not p.name.startswith(".")]
            return {"files": len(stats), "size": sum(s.st_size for s in stats),
                    "mtime_ns": max((s.st_mtime_ns for s in stats), default=0)}
        st = path.stat()
        return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    except OSError:
        return {}


def model_identity(spec) -> dict:
    """What a rerun compares to tell whether the model changed: the checkpoint's files' sha256
    (:func:`napari_vbmd.segmentation.models.resolve`; raises VbmdError for unknown models or ones
    without weights, before any work starts)."""
    from .segmentation.models import resolve

    return resolve(spec).identity()


def _worker_model(identity: dict, device: str):
    """The model for ``identity`` in this worker process, from the one model cache: (model,
    loaded_now). The checkpoint is checked against the hash the batch started with, so a worker that
    sees another file at that path refuses to use it."""
    from .segmentation.models import is_loaded, load, ref_from_identity

    ref = ref_from_identity(identity)
    loaded_now = not is_loaded(ref, device)
    return load(ref, device), loaded_now


# ---------------------------------------------------------------------------------------------
# One case (runs on a worker)
# ---------------------------------------------------------------------------------------------
def record_path(output_dir: str | Path, case: Case | str) -> Path:
    name = case if isinstance(case, str) else case.case
    return Path(output_dir) / "cases" / f"{name}.json"


def mask_suffix(case: Case, mask_format: str) -> str:
    if mask_format == "auto":
        return ".aim" if case.format in ("aim", "isq") else ".nii.gz"
    return MASK_FORMATS[mask_format]


def mask_path(output_dir: str | Path, case: Case, mask_format: str) -> Path:
    return Path(output_dir) / "masks" / f"{case.case}_mask{mask_suffix(case, mask_format)}"


def read_record(path: str | Path) -> dict | None:
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        return None
    return record


def _is_done(record: dict | None, sha256: str | None, job: Job, mask: Path, stat: dict | None = None,
             case: Case | None = None) -> bool:
    """Whether ``record`` is an up-to-date success: same input (by ``sha256``, or by size and
    modification time when ``stat`` is given instead), model and settings, and its mask is there."""
    if not record:
        return False
    if sha256 is not None:
        same_input = record.get("sha256") == sha256
    else:
        same_input = bool(stat) and record.get("input_stat") == stat
    return bool(
        record.get("status") == "ok"
        and record.get("record_version") == RECORD_VERSION
        and same_input
        and (record.get("model") or {}).get("sha256") == job.model_identity["sha256"]
        and record.get("settings") == job.settings.result_key()
        and record.get("manifest_hand") == (case.hand if case is not None else None)
        and record.get("mask") == mask.relative_to(job.output_dir).as_posix()
        and mask.is_file()
    )


def _version() -> str:
    from . import __version__

    return __version__


def process_case(case: Case, job: Job) -> dict:
    """Segment and measure one case; write its mask and record; return the record without profile.

    Never raises for a bad input: the error is the record's. A record that is up to date (same
    input hash, model and settings) is returned as it is, marked ``this_run="skipped"``.
    """
    started = time.perf_counter()
    settings = job.settings
    timings = dict.fromkeys(TIMINGS, 0.0)
    out_record = record_path(job.output_dir, case)
    out_mask = mask_path(job.output_dir, case, settings.mask_format)
    record = {
        "format": RECORD_FORMAT,
        "record_version": RECORD_VERSION,
        "case": case.case,
        "file": case.file,
        "input_format": case.format,
        "sha256": None,
        "input_stat": input_stat(case.path),
        "model": {k: job.model_identity.get(k) for k in ("spec", "name", "sha256")},
        "settings": settings.result_key(),
        "status": "failed",
        "this_run": "failed",
        "error": None,
        "mask": None,
        "device": None,
        "manifest_hand": case.hand,
        "hand": None,
        "hand_source": None,
        "hand_confidence": None,
        "hand_reason": None,
        "figures": None,
        "profile": None,
        "timings_s": timings,
        "worker": f"{socket.gethostname()}:{os.getpid()}",
        "napari_vbmd_version": _version(),
        "model_loaded_now": False,
        "finished": None,
    }
    try:
        t = time.perf_counter()
        sha = input_sha256(case.path)
        timings["hash"] = time.perf_counter() - t
        record["sha256"] = sha
        previous = read_record(out_record)
        if _is_done(previous, sha, job, out_mask, case=case):
            if previous.get("input_stat") != record["input_stat"]:  # touched, not changed
                previous["input_stat"] = record["input_stat"]
                write_text_atomic(out_record, json.dumps(previous, indent=1) + "\n", protect=(case.path,))
            previous["this_run"] = "skipped"
            previous.pop("profile", None)
            return previous
        record.update(_segment_and_measure(case, job, out_mask, timings))
        record["status"] = record["this_run"] = "ok"
    except CancelledError:
        raise
    except VbmdError as exc:
        record["error"] = one_line(exc, named=False)
    except MemoryError:
        record["error"] = f"{case.file}: out of memory (give workers more memory or fewer threads)"
    except Exception as exc:  # a bug or a library's surprise: still only this case fails
        record["error"] = f"{case.file}: internal error: {one_line(exc)}"
    if record["status"] != "ok":
        with contextlib.suppress(OSError):
            out_mask.unlink()  # an earlier run's mask no longer belongs to this input
    timings["total"] = time.perf_counter() - started
    record["finished"] = timestamp()
    try:
        out_record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_record, json.dumps(jsonable(record), indent=1) + "\n", protect=(case.path,))
    except (OSError, VbmdError) as exc:  # e.g. a full disk: the case is not done, the batch goes on
        with contextlib.suppress(OSError):
            out_mask.unlink()
        record.update(status="failed", this_run="failed", mask=None, figures=None,
                      error=f"{out_record}: cannot write the case's record ({one_line(exc, named=False)})")
    record.pop("profile", None)
    return record


def _segment_and_measure(case: Case, job: Job, out_mask: Path, timings: dict) -> dict:
    from .io import read_scan, write_mask
    from .measure import measure_vbmd
    from .scan import apply_user_calibration, calibration_line, spacing_line
    from .segmentation.hand import resolve_hand
    from .segmentation.pipeline import run

    settings = job.settings
    t = time.perf_counter()
    image = read_scan(case.path)
    if image.kind != "image":
        raise VbmdError("is a mask, not a greyscale scan", case.path)
    # the user's calibration is for the cohort's files without one (--units help); a file's own stays
    image = apply_user_calibration(image, units=settings.units, slope=settings.slope, intercept=settings.intercept,
                                   if_calibrated="keep")
    timings["read"] = time.perf_counter() - t
    t = time.perf_counter()
    decision = resolve_hand(image, settings.segmentation.hand, case.hand)
    timings["preprocess"] = time.perf_counter() - t
    if not decision.decided:
        raise VbmdError(f"cannot tell which hand this is ({decision.reason}); give it in the manifest's hand column "
                        "(--manifest) or with --hand left|right for the folder", case.path)
    model, loaded_now = _worker_model(job.model_identity, settings.segmentation.device)
    result = run(image, settings.segmentation.replace(model=model, hand=decision))
    for key in ("preprocess", "inference", "postprocess"):
        timings[key] += result.timings[key]
    t = time.perf_counter()
    vbmd = measure_vbmd(image, result.mask)
    timings["measure"] = time.perf_counter() - t
    t = time.perf_counter()
    out_mask.parent.mkdir(parents=True, exist_ok=True)
    write_mask(out_mask, result.mask, parent=image, protect=(case.path,))
    timings["write"] = time.perf_counter() - t
    figures = vbmd.to_dict(profile=False)
    return {
        "mask": out_mask.relative_to(job.output_dir).as_posix(),
        "device": result.device,
        "runtime": result.runtime,
        "hand": result.hand,
        "hand_source": result.hand_source,
        "hand_confidence": result.hand_confidence,
        "hand_reason": result.hand_reason,
        "voi_slices": list(result.voi) if result.voi else None,
        "joint_cut": result.joint_cut,
        "bone_unchecked": result.bone_unchecked,
        "calibration": calibration_line(image),  # a cohort mixes files' own calibrations and the user's
        "voxel_size": spacing_line(image),
        "figures": figures,
        "profile": dataclasses.asdict(vbmd.profile),
        "model_loaded_now": loaded_now,
    }


def _failed_row(case: Case, job: Job, error: str) -> dict:
    return {
        "format": RECORD_FORMAT, "case": case.case, "file": case.file, "input_format": case.format,
        "status": "failed", "this_run": "failed", "error": error, "sha256": None,
        "model": {k: job.model_identity.get(k) for k in ("spec", "name", "sha256")},
        "settings": job.settings.result_key(), "timings_s": dict.fromkeys(TIMINGS, 0.0), "figures": None,
    }


def csv_row(record: dict) -> dict:
    figures = record.get("figures") or {}
    timings = record.get("timings_s") or {}
    model = record.get("model") or {}
    row = {
        "case": record.get("case"), "file": record.get("file"), "format": record.get("input_format"),
        "status": "ok" if record.get("status") == "ok" else "failed", "this_run": record.get("this_run"),
        "error": record.get("error") or "", "sha256": record.get("sha256") or "", "model": model.get("name"),
        "model_sha256": model.get("sha256"), "device": record.get("device"), "hand": record.get("hand"),
        "hand_source": record.get("hand_source"), "hand_confidence": record.get("hand_confidence"),
        "bone_unchecked": record.get("bone_unchecked") or "",
        "calibration": record.get("calibration") or "", "voxel_size": record.get("voxel_size") or "",
        "mask": record.get("mask") or "", "worker": record.get("worker"), "finished": record.get("finished"),
    }
    for key in FIGURES:
        row[key] = figures.get(key)
    for key in TIMINGS:
        value = timings.get(key)
        row[f"t_{key}_s"] = None if value is None else round(float(value), 4)
    return {k: row.get(k) for k in CSV_COLUMNS}


def write_cohort_csv(path: str | Path, records: list[dict], protect=()) -> Path:
    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for record in records:
        writer.writerow({k: ("" if v is None else v) for k, v in csv_row(record).items()})
    return write_text_atomic(path, buffer.getvalue(), protect=protect)
