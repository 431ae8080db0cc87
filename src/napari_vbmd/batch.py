"""Cohort processing: find the scans in a folder, segment and measure each, on a Dask cluster.

``run_batch(IN, OUT, settings)`` discovers the scans under IN (AIM, ISQ, NIfTI files and DICOM
series folders; masks, contours and side files are left out and listed), sends one task per scan
to ``dask.distributed`` workers (a local cluster of processes by default, or an existing
scheduler), and writes into OUT:

- ``masks/<case>_mask.<ext>``: the MC2 mask of each scan;
- ``cases/<case>.json``: the per-case record (input hash, model identity, settings, vBMD figures,
  per-slice profile, timings, status, error); it is also the resume manifest;
- ``cohort.csv``: one row per case found in IN; ``batch.json``: the run's summary.

Resuming: a case whose record says it succeeded with the same input sha256, the same model
(checkpoint file hash) and the same settings, and whose mask is still there, is skipped; any other
case is redone. Every output is written atomically (temporary file, then rename), and each case's
record is written after its mask, so a run killed at any point leaves whole files only; the
temporary files a killed run leaves behind are removed when the next run starts.

A bad file fails its own case with a one-line error; the batch goes on. Workers load the model once
per process (see :func:`napari_vbmd.batch_case._worker_model`) and run one scan per worker thread, so the memory a task
may use is bounded by the worker's memory limit divided by its threads.
"""
from __future__ import annotations

import dataclasses
import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from ._atomic import non_regular_reason, write_text_atomic
from .errors import CancelledError, VbmdError
from .naming import BATCH_SCAN_SUFFIXES, is_side_file, relative_case_id, scan_suffix
from .util import jsonable

if TYPE_CHECKING:
    from .segmentation.settings import SegmentSettings

Progress = Callable[[int, int, str], None]

from .batch_case import (  # noqa: E402,F401  (the jobs of a batch live in their own modules; names their callers use kept here)
    CSV_COLUMNS,
    MASK_FORMATS,
    _is_done,
    csv_row,
    input_stat,
    mask_path,
    model_identity,
    process_case,
    read_record,
    record_path,
    write_cohort_csv,
)
from .batch_cluster import (  # noqa: E402,F401
    _client,
    _output_lock,
    _prepare_worker,
    _run_on_cluster,
    default_workers,
    remove_stale_temporaries,
)



# ---------------------------------------------------------------------------------------------
# What to run
# ---------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Case:
    case: str  # identifier: path below IN without the scan suffix, "/"-separated
    path: str  # absolute path of the file or DICOM folder
    file: str  # path relative to IN
    format: str  # "aim", "isq", "nifti" or "dicom"
    hand: str | None = None  # the hand a manifest gives for this scan


#: the keyword names BatchSettings takes for its SegmentSettings (batch name -> SegmentSettings field)
_SEGMENT_KEYWORDS = {"model": "model", "device": "device", "hand": "hand", "voi_mm": "voi_mm",
                     "hole_filling": "hole_filling", "torch_threads": "threads", "boundary_band_mm": "boundary_band_mm"}


@dataclass(frozen=True, init=False)
class BatchSettings:
    """How each scan is processed: its :class:`~napari_vbmd.segmentation.settings.SegmentSettings`
    (checked when built) and what the batch adds (mask format, calibration of uncalibrated files).
    ``result_key`` decides what a rerun redoes. ``BatchSettings(model=..., torch_threads=...)`` builds
    the segmentation settings from the keyword names of earlier versions."""

    segmentation: "SegmentSettings"
    mask_format: str = "auto"  # "auto": .aim for Scanco inputs, .nii.gz for NIfTI and DICOM
    units: str | None = None
    slope: float | None = None
    intercept: float | None = None

    def __init__(self, segmentation=None, mask_format: str = "auto", units: str | None = None,
                 slope: float | None = None, intercept: float | None = None, **segment_keywords):
        from .segmentation.settings import SegmentSettings

        unknown = sorted(set(segment_keywords) - set(_SEGMENT_KEYWORDS))
        if unknown:
            raise TypeError(f"BatchSettings got unexpected keywords {unknown}")
        if segmentation is None:
            segmentation = SegmentSettings(**{_SEGMENT_KEYWORDS[k]: v for k, v in segment_keywords.items()})
        elif segment_keywords:
            segmentation = segmentation.replace(**{_SEGMENT_KEYWORDS[k]: v for k, v in segment_keywords.items()})
        for name, value in (("segmentation", segmentation), ("mask_format", mask_format), ("units", units),
                            ("slope", slope), ("intercept", intercept)):
            object.__setattr__(self, name, value)

    def result_key(self) -> dict:
        """Settings that change a case's outputs (the device and thread counts do not)."""
        return {
            **self.segmentation.result_key(),
            "mask_format": self.mask_format,
            "units": self.units,
            "slope": self.slope,
            "intercept": self.intercept,
        }

    def validated(self) -> "BatchSettings":
        """The checks of what the batch adds (the segmentation settings checked themselves)."""
        if self.mask_format != "auto" and self.mask_format not in MASK_FORMATS:
            raise VbmdError(f"mask format must be auto or one of {', '.join(MASK_FORMATS)}, got {self.mask_format!r}")
        if (self.slope is None) != (self.intercept is None):
            raise VbmdError("give both a density slope and a density intercept")
        return self


@dataclass(frozen=True)
class Job:
    """What every task needs besides its case (small; sent with each task)."""

    input_dir: str
    output_dir: str
    settings: BatchSettings
    model_identity: dict


@dataclass
class BatchSummary:
    input: str
    output: str
    model: dict
    settings: dict
    processed: int
    skipped: int
    failed: int
    total: int
    ignored: list[dict]
    workers: str
    elapsed_s: float
    table: list[dict] = field(default_factory=list)
    cluster_start_s: float = 0.0  # of elapsed_s: starting or reaching the cluster, workers' imports
    manifest: str | None = None  # the CSV the hands of some cases came from

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------------------
# Discovery
# ---------------------------------------------------------------------------------------------
def _classify_file(path: Path) -> tuple[str | None, str | None]:
    """(format, None) for a scan to process, (None, reason) for a file to leave out.

    Files named like scans are always processed (a corrupt one then fails its own case); files
    with other names are processed only if their content is an AIM, ISQ or NIfTI.
    """
    from .io import detect_format, mask_reason

    suffix = scan_suffix(path.name, BATCH_SCAN_SUFFIXES)
    if suffix is None and is_side_file(path.name):
        return None, "not a scan (file type)"
    try:
        fmt = detect_format(path)
    except VbmdError:
        if suffix is None:
            return None, "not a scan (unrecognised content)"
        # named like a scan: process it so that its case reports the problem
        return {".aim": "aim", ".isq": "isq"}.get(suffix, "nifti"), None
    if fmt == "gobj":
        return None, "contour (GOBJ), not a scan"
    if fmt == "tiff":
        return None, "TIFF (carries no calibration; convert it to NIfTI or AIM)"
    if fmt == "dicom":
        return None, "DICOM file (DICOM series are processed per folder)"
    reason = mask_reason(path, fmt)
    if reason:
        return None, reason
    return fmt, None


def _is_dicom_folder(folder: Path, files: list[Path]) -> bool:
    from .io.dicom import is_dicom_file

    candidates = sorted(files, key=lambda p: (p.suffix.lower() != ".dcm", p.name))
    return any(is_dicom_file(p) for p in candidates[:20] if not is_side_file(p.name))


def check_outputs_outside_inputs(input_dir: str | Path, output_dir: str | Path) -> None:
    """Refuse an output folder whose masks/ or cases/ would be written among the inputs (e.g.
    ``vbmd batch T/masks T``, which would write T/masks/<case>_mask.aim over a truth mask)."""
    input_dir, output_dir = Path(input_dir).resolve(), Path(output_dir).resolve()
    if output_dir == input_dir:
        raise VbmdError("the output folder must not be the input folder (a sub-folder is fine)", output_dir)
    for sub in ("masks", "cases"):
        written = output_dir / sub
        if input_dir == written or written in input_dir.parents:
            raise VbmdError(f"the batch writes {written} and the input folder {input_dir} is (inside) it: outputs "
                            "would land among the inputs; choose an output folder outside them", output_dir)


def discover_cases(input_dir: str | Path, exclude: tuple = ()) -> tuple[list[Case], list[dict]]:
    """The scans under ``input_dir`` (sorted) and the files left out, each with its reason.

    Hidden files and folders and the folders in ``exclude`` (the output folder) are not looked in.
    A folder holding DICOM files is one case (its sub-folders are still searched).
    """
    root = Path(input_dir).resolve()
    excluded = {Path(e).resolve() for e in exclude}
    found: list[tuple[Path, str]] = []
    ignored: list[dict] = []
    for dirpath, dirnames, filenames in os.walk(root):
        here = Path(dirpath)
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and (here / d).resolve() not in excluded)
        files = []
        for name in sorted(f for f in filenames if not f.startswith(".")):
            reason = non_regular_reason(here / name)
            if reason is None:
                files.append(here / name)
            else:  # FIFOs, sockets, devices, broken links: never opened, and listed
                reason = "broken link" if reason == "no such file" else reason
                ignored.append({"file": (here / name).relative_to(root).as_posix(), "reason": reason})
        if files and _is_dicom_folder(here, files):
            found.append((here, "dicom"))
            continue
        for path in files:
            fmt, reason = _classify_file(path)
            if fmt:
                found.append((path, fmt))
            else:
                ignored.append({"file": path.relative_to(root).as_posix(), "reason": reason})
    rels = [p.relative_to(root) if p != root else Path(root.name) for p, _ in found]
    ids = [relative_case_id(r) for r in rels]
    clashes = {i for i in ids if ids.count(i) > 1}
    cases = []
    for (path, fmt), rel, cid in zip(found, rels, ids):
        if cid in clashes:
            cid = relative_case_id(rel, keep_suffix=True)
        cases.append(Case(case=cid, path=str(path), file=rel.as_posix(), format=fmt))
    return sorted(cases, key=lambda c: c.case), ignored


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
def run_batch(
    input_dir: str | Path,
    output_dir: str | Path,
    settings: BatchSettings | None = None,
    workers: int | None = None,
    threads_per_worker: int = 1,
    scheduler: str | None = None,
    memory_limit: str | int | None = "auto",
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
    rehash: bool = False,
    manifest: str | Path | None = None,
) -> BatchSummary:
    """Process every scan under ``input_dir`` into ``output_dir`` (see the module docstring).

    ``workers=0`` runs the cases one after the other in this process (no cluster). Otherwise a
    local cluster of ``workers`` processes is started, unless ``scheduler`` names an existing one.
    A case whose file has the size and modification time its successful record states is skipped
    without reading it; ``rehash=True`` makes the workers compare content hashes instead.

    The hand of each scan is the settings' hand when that is left or right; else a ``manifest``'s
    hand column (:mod:`napari_vbmd.batch_manifest`), else the scan's header, else its image; a
    scan that none of them decides fails alone, with the reason.
    """
    started = time.perf_counter()
    settings = (settings or BatchSettings()).validated()
    input_dir = Path(input_dir)
    output_dir = Path(output_dir)
    if not input_dir.is_dir():
        raise VbmdError("input folder does not exist" if not input_dir.exists() else "input is not a folder", input_dir)
    if output_dir.exists() and not output_dir.is_dir():
        raise VbmdError("output exists and is not a folder", output_dir)
    check_outputs_outside_inputs(input_dir, output_dir)
    if workers is not None and workers < 0:
        raise VbmdError(f"number of workers must be 0 or more, got {workers}")
    if threads_per_worker < 1:
        raise VbmdError(f"threads per worker must be at least 1, got {threads_per_worker}")
    identity = model_identity(settings.segmentation.model)
    if scheduler is None:
        from .segmentation.models import resolve_device

        resolve_device(settings.segmentation.device)  # workers are local: a missing GPU is an error now
    cases, ignored = discover_cases(input_dir, exclude=(output_dir,))
    if not cases:
        raise VbmdError("found no scans (AIM, ISQ, NIfTI files or DICOM folders) in the input folder", input_dir)
    if manifest is not None:
        from .batch_manifest import read_manifest

        hands = read_manifest(manifest, input_dir, cases)
        if settings.segmentation.hand != "auto" and any(hands.values()):
            raise VbmdError(f"give the hand either with --hand {settings.segmentation.hand} or in the manifest's "
                            "hand column, not both", manifest)
        cases = [dataclasses.replace(c, hand=hands.get(c.case)) for c in cases]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbmdError(f"cannot create output folder ({exc.strerror})", output_dir) from None

    if workers is None and scheduler is None:
        workers = default_workers(len(cases), settings.segmentation.device)
    if settings.segmentation.threads is None and scheduler is None:
        share = max(1, (os.cpu_count() or 1) // max(1, (workers or 1) * threads_per_worker))
        settings = BatchSettings(settings.segmentation.replace(threads=share), settings.mask_format, settings.units,
                                 settings.slope, settings.intercept)
    job = Job(str(input_dir.resolve()), str(output_dir.resolve()), settings, identity)

    records: dict[str, dict] = {}
    total = len(cases)

    def finished(case: Case, record: dict) -> None:
        records[case.case] = record
        if progress:
            progress(len(records), total, _progress_message(record))

    with _output_lock(output_dir):
        remove_stale_temporaries(output_dir)
        cluster_start_s = 0.0
        todo = []
        for case in cases:
            record = None if rehash else _quick_skip(case, job)
            if record is None:
                todo.append(case)
            else:
                finished(case, record)
        if not todo:
            where = "nothing to do"
        elif scheduler is None and workers == 0:
            where = "in process"
            for case in todo:
                if cancel and cancel():
                    raise CancelledError("batch cancelled")
                finished(case, process_case(case, job))
        else:
            t = time.perf_counter()
            with _client(workers or 0, threads_per_worker, scheduler, memory_limit) as (client, where):
                client.run(_prepare_worker)
                cluster_start_s = time.perf_counter() - t
                _run_on_cluster(client, todo, job, finished, cancel)
        ordered = [records[c.case] for c in cases]
        write_cohort_csv(output_dir / "cohort.csv", ordered, protect=[c.path for c in cases])
        summary = BatchSummary(
            input=str(input_dir), output=str(output_dir), model=identity, settings=settings.result_key(),
            processed=sum(r.get("this_run") == "ok" for r in ordered),
            skipped=sum(r.get("this_run") == "skipped" for r in ordered),
            failed=sum(r.get("status") != "ok" for r in ordered),
            total=total, ignored=ignored, workers=where, elapsed_s=round(time.perf_counter() - started, 3),
            table=[csv_row(r) for r in ordered], cluster_start_s=round(cluster_start_s, 3),
            manifest=str(manifest) if manifest is not None else None,
        )
        write_text_atomic(output_dir / "batch.json", json.dumps(jsonable(summary.to_dict()), indent=1) + "\n")
    return summary


def _quick_skip(case: Case, job: Job) -> dict | None:
    """The record of a case that is up to date judged by its file's size and time (no hashing)."""
    record = read_record(record_path(job.output_dir, case))
    if _is_done(record, None, job, mask_path(job.output_dir, case, job.settings.mask_format), input_stat(case.path),
                case=case):
        record["this_run"] = "skipped"
        record.pop("profile", None)
        return record
    return None


def _progress_message(record: dict) -> str:
    status = record.get("this_run")
    if status == "failed":
        return f"{record.get('case')} FAILED: {record.get('error')}"
    figures = record.get("figures") or {}
    d100 = figures.get("d100_mg_ha_cm3")
    seconds = (record.get("timings_s") or {}).get("total") or 0.0
    what = "skipped (up to date)" if status == "skipped" else f"ok in {seconds:.1f} s"
    return f"{record.get('case')} {what}" + (f", D100 {d100:.1f} mg HA/cm3" if d100 is not None else "")
