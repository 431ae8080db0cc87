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
per process (see :func:`_worker_model`) and run one scan per worker thread, so the memory a task
may use is bounded by the worker's memory limit divided by its threads.
"""
from __future__ import annotations

import contextlib
import csv
import dataclasses
import hashlib
import io as _io
import json
import os
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from ._atomic import update_digest, write_text_atomic
from .errors import CancelledError, VbmdError

Progress = Callable[[int, int, str], None]

RECORD_FORMAT = "napari-vbmd-batch-case"
RECORD_VERSION = 2  # 2: the hand is never assumed (records of version 1 may say "assumed"): redone

#: suffixes of files that are scans (a VMS version suffix such as ";1" is ignored)
SCAN_SUFFIXES = (".aim", ".isq", ".nii", ".nii.gz")
#: suffixes of files that are never scans, not even looked into
SIDE_FILE_SUFFIXES = frozenset(
    ".json .csv .tsv .txt .md .rst .log .pdf .png .jpg .jpeg .gif .svg .html .xml .yaml .yml .py .sh "
    ".safetensors .pt .pth .zip .tar .gz .7z .xlsx .xls .doc .docx .gobj .tif .tiff".split()
)
#: AIM data types of greyscale scans; char and binary AIMs hold masks
GREYSCALE_AIM_TYPES = ("int16", "float32")
MASK_FORMATS = {"aim": ".aim", "nii.gz": ".nii.gz", "nii": ".nii", "tif": ".tif"}

CSV_COLUMNS = [
    "case", "file", "format", "status", "this_run", "error", "sha256", "model", "model_sha256", "device",
    "hand", "hand_source", "hand_confidence", "d100_mg_ha_cm3", "sd_mg_ha_cm3", "n_voxels", "volume_mm3", "n_slices", "mean_slice_area_mm2",
    "first_slice", "last_slice", "mask", "t_hash_s", "t_read_s", "t_preprocess_s", "t_inference_s",
    "t_postprocess_s", "t_write_s", "t_measure_s", "t_total_s", "worker", "finished",
]
FIGURES = ("d100_mg_ha_cm3", "sd_mg_ha_cm3", "n_voxels", "volume_mm3", "n_slices", "mean_slice_area_mm2",
           "first_slice", "last_slice")
#: environment of local worker processes (Dask's default, less MALLOC_TRIM_THRESHOLD_)
WORKER_ENVIRONMENT = {"OMP_NUM_THREADS": 1, "MKL_NUM_THREADS": 1, "OPENBLAS_NUM_THREADS": 1}

#: how long a batch given a scheduler waits for its first worker
WAIT_FOR_WORKERS_S = 300

TIMINGS = ("hash", "read", "preprocess", "inference", "postprocess", "write", "measure", "total")


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


@dataclass(frozen=True)
class BatchSettings:
    """Everything about how each scan is processed. ``result_key`` decides what a rerun redoes."""

    model: str = "default"
    device: str = "auto"
    hand: str = "auto"
    voi_mm: float | None = None
    hole_filling: str = "fill"
    mask_format: str = "auto"  # "auto": .aim for Scanco inputs, .nii.gz for NIfTI and DICOM
    units: str | None = None
    slope: float | None = None
    intercept: float | None = None
    torch_threads: int | None = None

    def result_key(self) -> dict:
        """Settings that change a case's outputs (the device and thread counts do not)."""
        return {
            "hand": self.hand,
            "voi_mm": self.voi_mm,
            "hole_filling": self.hole_filling,
            "mask_format": self.mask_format,
            "units": self.units,
            "slope": self.slope,
            "intercept": self.intercept,
        }

    def validated(self) -> "BatchSettings":
        from .segmentation import postprocess

        if self.hand not in ("auto", "left", "right"):
            raise VbmdError(f"hand must be auto, left or right, got {self.hand!r}")
        if self.hole_filling not in postprocess.HOLE_FILLING:
            raise VbmdError(f"hole filling must be one of {', '.join(postprocess.HOLE_FILLING)}, got {self.hole_filling!r}")
        if self.mask_format != "auto" and self.mask_format not in MASK_FORMATS:
            raise VbmdError(f"mask format must be auto or one of {', '.join(MASK_FORMATS)}, got {self.mask_format!r}")
        if self.voi_mm is not None and not self.voi_mm > 0:
            raise VbmdError(f"VOI length must be positive, got {self.voi_mm!r}")
        if (self.slope is None) != (self.intercept is None):
            raise VbmdError("give both a density slope and a density intercept")
        if self.torch_threads is not None and self.torch_threads < 1:
            raise VbmdError(f"threads must be at least 1, got {self.torch_threads}")
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
def _strip_version(name: str) -> str:
    base, sep, ver = name.rpartition(";")
    return base if sep and ver.isdigit() else name


def _scan_suffix(name: str) -> str | None:
    lower = _strip_version(name).lower()
    for suffix in sorted(SCAN_SUFFIXES, key=len, reverse=True):
        if lower.endswith(suffix):
            return suffix
    return None


def _side_file(name: str) -> bool:
    lower = _strip_version(name).lower()
    return any(lower.endswith(s) for s in SIDE_FILE_SUFFIXES)


def _classify_file(path: Path) -> tuple[str | None, str | None]:
    """(format, None) for a scan to process, (None, reason) for a file to leave out.

    Files named like scans are always processed (a corrupt one then fails its own case); files
    with other names are processed only if their content is an AIM, ISQ or NIfTI.
    """
    from .io import detect_format

    suffix = _scan_suffix(path.name)
    if suffix is None and _side_file(path.name):
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
    reason = _mask_reason(path, fmt)
    if reason:
        return None, reason
    return fmt, None


def _mask_reason(path: Path, fmt: str) -> str | None:
    """Why a file is a mask rather than a greyscale scan, from its header only (or None)."""
    if fmt == "aim":
        from .io.aim import validate_aim_header

        try:
            header = validate_aim_header(path)
        except VbmdError:
            return None  # corrupt: its case will say so
        type_name = str(header.get("type_name", ""))
        if type_name not in GREYSCALE_AIM_TYPES:
            return f"mask (AIM of type {type_name})"
        return None
    if fmt == "nifti":
        try:
            import nibabel as nib

            header = nib.load(str(path)).header
            descrip = header["descrip"].tobytes().split(b"\0", 1)[0].decode("ascii", "ignore")
            dtype = header.get_data_dtype()
        except Exception:
            return None
        if descrip.startswith("napari-vbmd units=mask"):
            return "mask (NIfTI written as a mask)"
        if dtype.kind in "bu" and dtype.itemsize == 1:
            return f"mask (NIfTI of type {dtype})"
    return None


def _is_dicom_folder(folder: Path, files: list[Path]) -> bool:
    from .io.dicom import is_dicom_file

    candidates = sorted(files, key=lambda p: (p.suffix.lower() != ".dcm", p.name))
    return any(is_dicom_file(p) for p in candidates[:20] if not _side_file(p.name))


def _case_id(rel: Path, keep_suffix: bool = False) -> str:
    name = _strip_version(rel.name)
    if keep_suffix:
        stem = name.replace(".", "_")
    else:
        suffix = _scan_suffix(name)
        stem = name[: -len(suffix)] if suffix and len(name) > len(suffix) else name
    parts = [*rel.parent.parts, stem] if str(rel.parent) != "." else [stem]
    return "/".join(parts)


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
        files = [here / f for f in sorted(filenames) if not f.startswith(".") and (here / f).is_file()]
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
    ids = [_case_id(r) for r in rels]
    clashes = {i for i in ids if ids.count(i) > 1}
    cases = []
    for (path, fmt), rel, cid in zip(found, rels, ids):
        if cid in clashes:
            cid = _case_id(rel, keep_suffix=True)
        cases.append(Case(case=cid, path=str(path), file=rel.as_posix(), format=fmt))
    return sorted(cases, key=lambda c: c.case), ignored


# ---------------------------------------------------------------------------------------------
# Hashes and model identity
# ---------------------------------------------------------------------------------------------
def _hash_files(paths: list[Path], names: list[str] | None = None) -> str:
    digest = hashlib.sha256()
    for i, path in enumerate(paths):
        if names is not None:
            digest.update(names[i].encode("utf-8") + b"\0")
        update_digest(digest, path, block_size=1 << 22)
    return digest.hexdigest()


def input_sha256(path: str | Path) -> str:
    """sha256 of a file, or of a DICOM folder's files (names and contents, in name order)."""
    path = Path(path)
    try:
        if path.is_dir():
            files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
            return _hash_files(files, [p.name for p in files])
        return _hash_files([path])
    except OSError as exc:
        raise VbmdError(f"cannot read ({exc.strerror})", path) from None


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


def model_identity(spec: str | Path) -> dict:
    """What a rerun compares to tell whether the model changed: the checkpoint's files' sha256.

    Raises VbmdError for unknown models or ones without weights, before any work starts.
    """
    from . import __version__
    from .segmentation.checkpoint import checkpoint_paths, read_config
    from .segmentation.registry import DEFAULT_CHECKPOINT, MODEL_NAMES, load_model

    spec = str(spec)
    if spec == "classical":
        return {"spec": spec, "name": "classical", "sha256": f"classical-{__version__}", "path": None}
    if spec in ("unet2d", "unet3d"):
        load_model(spec, "cpu")  # raises the explanation of how to get weights
    if spec == "default":
        if not DEFAULT_CHECKPOINT.with_suffix(".json").is_file():
            raise VbmdError("the bundled default model is missing from this installation (use --model classical "
                            "or a checkpoint path)", DEFAULT_CHECKPOINT.with_suffix(".json"))
        path = DEFAULT_CHECKPOINT
    else:
        path = Path(spec)
        if spec not in MODEL_NAMES and not path.exists() and not path.with_suffix(".json").exists():
            raise VbmdError(f"unknown model {spec!r}: give default, classical or a checkpoint path")
    config_path, weights_path = checkpoint_paths(path)
    config = read_config(config_path)
    return {
        "spec": spec,
        "name": spec if spec in MODEL_NAMES else config.name,
        "sha256": _hash_files([config_path, weights_path]),
        "path": str(config_path.resolve()),
        "architecture": config.architecture,
    }


# -- the per-worker model cache ---------------------------------------------------------------
_MODEL_CACHE: dict[tuple[str, str, str], object] = {}
_MODEL_LOCK = threading.Lock()


def _worker_model(identity: dict, device: str):
    """The loaded network for ``identity`` in this worker process: loaded on first use, then kept.

    Returns (model argument for segment(), loaded_now). The checkpoint is checked against the hash
    the batch started with, so a worker that sees another file at that path refuses to use it.
    """
    if identity["spec"] == "classical":
        return "classical", False
    from .segmentation.checkpoint import checkpoint_paths
    from .segmentation.registry import DEFAULT_CHECKPOINT, load_model

    # the bundled model is wherever this worker's installation keeps it
    path = str(DEFAULT_CHECKPOINT) if identity["spec"] == "default" else identity["path"]
    key = (path, device, identity["sha256"])
    with _MODEL_LOCK:
        loaded = _MODEL_CACHE.get(key)
        if loaded is not None:
            return loaded, False
        config_path, weights_path = checkpoint_paths(path)
        here = _hash_files([config_path, weights_path])
        if here != identity["sha256"]:
            what = ("the bundled default model on this worker differs from the client's (install the same "
                    "napari-vbmd version everywhere)" if identity["spec"] == "default" else
                    "the checkpoint this worker sees differs from the one the batch started with "
                    "(workers need the same file at the same path)")
            raise VbmdError(what, config_path)
        loaded = load_model(path, device)
        loaded.name = identity["name"]
        _MODEL_CACHE[key] = loaded
        return loaded, True


# ---------------------------------------------------------------------------------------------
# One case (runs on a worker)
# ---------------------------------------------------------------------------------------------
def record_path(output_dir: str | Path, case: Case | str) -> Path:
    name = case.case if isinstance(case, Case) else case
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


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split()) or type(exc).__name__


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
        record["error"] = _one_line(exc)
    except MemoryError:
        record["error"] = f"{case.file}: out of memory (give workers more memory or fewer threads)"
    except Exception as exc:  # a bug or a library's surprise: still only this case fails
        record["error"] = f"{case.file}: internal error: {type(exc).__name__}: {_one_line(exc)}"
    if record["status"] != "ok":
        with contextlib.suppress(OSError):
            out_mask.unlink()  # an earlier run's mask no longer belongs to this input
    timings["total"] = time.perf_counter() - started
    record["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    try:
        out_record.parent.mkdir(parents=True, exist_ok=True)
        write_text_atomic(out_record, json.dumps(_jsonable(record), indent=1) + "\n", protect=(case.path,))
    except (OSError, VbmdError) as exc:  # e.g. a full disk: the case is not done, the batch goes on
        with contextlib.suppress(OSError):
            out_mask.unlink()
        record.update(status="failed", this_run="failed", mask=None, figures=None,
                      error=f"{out_record}: cannot write the case's record ({_one_line(exc)})")
    record.pop("profile", None)
    return record


def _segment_and_measure(case: Case, job: Job, out_mask: Path, timings: dict) -> dict:
    from .io import read_scan, write_mask
    from .measure import measure_vbmd
    from .scan import apply_user_calibration
    from .segmentation.hand import resolve_hand
    from .segmentation.focus import segment_mc2

    settings = job.settings
    t = time.perf_counter()
    image = read_scan(case.path)
    if image.kind != "image":
        raise VbmdError("is a mask, not a greyscale scan", case.path)
    image = apply_user_calibration(image, units=settings.units, slope=settings.slope, intercept=settings.intercept)
    timings["read"] = time.perf_counter() - t
    t = time.perf_counter()
    decision = resolve_hand(image, settings.hand, case.hand)
    timings["preprocess"] = time.perf_counter() - t
    if not decision.decided:
        raise VbmdError(f"cannot tell which hand this is ({decision.reason}); give it in the manifest's hand column "
                        "(--manifest) or with --hand left|right for the folder", case.path)
    model, loaded_now = _worker_model(job.model_identity, settings.device)
    result = segment_mc2(
        image, model=model, device=settings.device, hand=decision, voi_mm=settings.voi_mm,
        hole_filling=settings.hole_filling, threads=settings.torch_threads,
    )
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
        "hand": result.hand,
        "hand_source": result.hand_source,
        "hand_confidence": result.hand_confidence,
        "hand_reason": result.hand_reason,
        "voi_slices": list(result.voi) if result.voi else None,
        "figures": figures,
        "profile": dataclasses.asdict(vbmd.profile),
        "model_loaded_now": loaded_now,
    }


def _jsonable(value):
    """numpy scalars to Python numbers, NaN and infinities to null."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _output_lock(output_dir: Path) -> Iterator[None]:
    """One batch at a time per output folder (an OS lock: released when the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks; run one batch per folder by hand
        yield
        return
    handle = open(output_dir / ".vbmd-batch.lock", "a+")
    try:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            raise VbmdError("another vbmd batch is writing to this folder", output_dir) from None
        yield
    finally:
        handle.close()


def remove_stale_temporaries(output_dir: str | Path) -> list[Path]:
    """Delete the temporary files (``.NAME.*.part*``) a killed run left in our output folders."""
    output_dir = Path(output_dir)
    removed = []
    candidates = list(output_dir.glob(".*.part*"))
    for sub in ("cases", "masks"):
        if (output_dir / sub).is_dir():
            candidates += list((output_dir / sub).rglob(".*.part*"))
    for path in candidates:
        if path.is_file() and ".part" in path.name:
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed


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


def default_workers(n_cases: int, device: str = "cpu") -> int:
    """Local workers: one per two cores, at most one per 4 GB of memory, one if the device is a GPU."""
    if device.startswith("cuda") or device == "mps":
        return 1
    cores = os.cpu_count() or 1
    try:
        memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        memory = 8 << 30
    return max(1, min(n_cases, max(1, cores // 2), max(1, memory // (4 << 30))))


@contextlib.contextmanager
def _client(workers: int, threads_per_worker: int, scheduler: str | None, memory_limit) -> Iterator[tuple[object, str]]:
    import logging

    import dask
    from distributed import Client, LocalCluster

    if scheduler:
        try:
            if "://" not in scheduler and Path(scheduler).is_file():  # `dask scheduler --scheduler-file`
                client = Client(scheduler_file=scheduler, timeout="30s")
            else:
                client = Client(scheduler, timeout="30s")
        except (OSError, TimeoutError, ValueError) as exc:
            raise VbmdError(f"cannot reach the Dask scheduler at {scheduler} ({_one_line(exc)})") from None
        try:
            if not client.scheduler_info().get("workers"):
                try:
                    client.wait_for_workers(1, timeout=WAIT_FOR_WORKERS_S)
                except TimeoutError:
                    raise VbmdError(f"no Dask worker joined the scheduler at {scheduler} within "
                                    f"{WAIT_FOR_WORKERS_S} s (start some with `dask worker {scheduler}`)") from None
            yield client, f"scheduler {scheduler} ({len(client.scheduler_info().get('workers', {}))} workers)"
        finally:
            client.close()
        return
    with dask.config.set({
        # a scan that kills its worker (memory) is retried once, then fails its own case
        "distributed.scheduler.allowed-failures": 1,
        # send a worker only the cases it can start now, so a worker that dies takes no queued
        # neighbour with it
        "distributed.scheduler.worker-saturation": 1.0,
        # tasks return small records: nothing worth spilling to disk
        "distributed.worker.memory.target": False,
        "distributed.worker.memory.spill": False,
        # pausing a worker that runs one case helps nothing (its memory is the case's own)
        "distributed.worker.memory.pause": False,
        # Dask's default MALLOC_TRIM_THRESHOLD_ turns off glibc's adaptive mmap threshold, so every
        # large numpy array is mmapped and page-faulted afresh: cases ran ~45% slower with it
        "distributed.nanny.pre-spawn-environ": WORKER_ENVIRONMENT,
    }):
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=threads_per_worker, processes=True,
            memory_limit=memory_limit, host="127.0.0.1", dashboard_address=None, silence_logs=logging.ERROR,
        )
        client = Client(cluster)
        try:
            yield client, f"local: {workers} workers x {threads_per_worker} threads"
        finally:
            client.close()
            cluster.close()


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

    The hand of each scan is ``settings.hand`` when that is left or right; else a ``manifest``'s
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
    if output_dir.resolve() == input_dir.resolve():
        raise VbmdError("the output folder must not be the input folder (a sub-folder is fine)", output_dir)
    if workers is not None and workers < 0:
        raise VbmdError(f"number of workers must be 0 or more, got {workers}")
    if threads_per_worker < 1:
        raise VbmdError(f"threads per worker must be at least 1, got {threads_per_worker}")
    identity = model_identity(settings.model)
    if scheduler is None:
        from .segmentation.registry import resolve_device

        resolve_device(settings.device)  # workers are local: a missing GPU is an error now
    cases, ignored = discover_cases(input_dir, exclude=(output_dir,))
    if not cases:
        raise VbmdError("found no scans (AIM, ISQ, NIfTI files or DICOM folders) in the input folder", input_dir)
    if manifest is not None:
        from .batch_manifest import read_manifest

        hands = read_manifest(manifest, input_dir, cases)
        if settings.hand != "auto" and any(hands.values()):
            raise VbmdError(f"give the hand either with --hand {settings.hand} or in the manifest's hand column, "
                            "not both", manifest)
        cases = [dataclasses.replace(c, hand=hands.get(c.case)) for c in cases]
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbmdError(f"cannot create output folder ({exc.strerror})", output_dir) from None

    if workers is None and scheduler is None:
        workers = default_workers(len(cases), settings.device)
    if settings.torch_threads is None and scheduler is None:
        share = max(1, (os.cpu_count() or 1) // max(1, (workers or 1) * threads_per_worker))
        settings = dataclasses.replace(settings, torch_threads=share)
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
        write_text_atomic(output_dir / "batch.json", json.dumps(_jsonable(summary.to_dict()), indent=1) + "\n")
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


def _prepare_worker() -> None:
    """Import the heavy modules once per worker, so the first case's timings are its own."""
    from .segmentation import pipeline  # noqa: F401  (imports torch)


def _run_on_cluster(client, cases: list[Case], job: Job, finished, cancel) -> None:
    from distributed import as_completed

    token = hashlib.sha256(f"{job.output_dir}{time.time_ns()}".encode()).hexdigest()[:8]
    futures = {}
    for case in cases:
        key = f"vbmd-case-{token}-{len(futures)}"
        futures[client.submit(process_case, case, job, key=key, pure=False)] = case
    try:
        for future in as_completed(list(futures)):
            if cancel and cancel():
                raise CancelledError("batch cancelled")
            case = futures[future]
            try:
                record = future.result()
            except CancelledError:
                raise
            except Exception as exc:
                if type(exc).__name__ == "KilledWorker":  # died, e.g. killed at its memory limit
                    error = (f"{case.file}: the worker processes running this case died (each time it was "
                             "tried): memory limit too low?")
                else:  # e.g. the worker cannot import napari_vbmd, or a version mismatch
                    error = f"{case.file}: the task failed on its worker: {type(exc).__name__}: {_one_line(exc)}"
                record = _failed_row(case, job, error)
            finished(case, record)
    except BaseException:
        client.cancel(list(futures))
        raise


def _progress_message(record: dict) -> str:
    status = record.get("this_run")
    if status == "failed":
        return f"{record.get('case')} FAILED: {record.get('error')}"
    figures = record.get("figures") or {}
    d100 = figures.get("d100_mg_ha_cm3")
    seconds = (record.get("timings_s") or {}).get("total") or 0.0
    what = "skipped (up to date)" if status == "skipped" else f"ok in {seconds:.1f} s"
    return f"{record.get('case')} {what}" + (f", D100 {d100:.1f} mg HA/cm3" if d100 is not None else "")
