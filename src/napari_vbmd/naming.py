"""File naming: which names are scans, their suffixes and OpenVMS versions, case ids, masks by name.

Every part of the program that reads a folder (batch, evaluation, training, the desk's default case
name, format detection) asks this module, so one file gets the same suffix, stem and case id
everywhere. What a file's *header* says (a mask AIM, a NIfTI written as a mask) is
:func:`napari_vbmd.io.mask_reason`'s; napari's reader patterns in ``napari.yaml`` list the same
suffixes (a test keeps them in step).
"""
from __future__ import annotations

import re
from pathlib import Path, PurePath

#: every name ending the readers understand, longest first (a folder is a DICOM series)
SCAN_SUFFIXES = (".nii.gz", ".nii", ".aim", ".isq", ".gobj", ".tiff", ".tif", ".dcm")
#: the calibrated greyscale scans a batch processes (TIFF carries no calibration, a GOBJ is a
#: contour, DICOM series go per folder)
BATCH_SCAN_SUFFIXES = (".nii.gz", ".nii", ".aim", ".isq")
#: the images a training pair may have
TRAINING_IMAGE_SUFFIXES = (".nii.gz", ".nii", ".aim", ".isq", ".tiff", ".tif")
#: where a training image ``{case}{suffix}`` finds its mask, in order of preference
TRAINING_MASK_PATTERNS = ("{case}_mask{suffix}", "{case}_mask.aim", "{case}_mask.nii.gz", "{case}_mask.nii",
                          "{case}_mask.tif", "{case}_mask.tiff", "{case}.gobj", "{case}_mask.gobj", "{case}.GOBJ")
#: name endings of files that are never scans, not even looked into
SIDE_FILE_SUFFIXES = frozenset(
    ".json .csv .tsv .txt .md .rst .log .pdf .png .jpg .jpeg .gif .svg .html .xml .yaml .yml .py .sh "
    ".safetensors .pt .pth .zip .tar .gz .7z .xlsx .xls .doc .docx .gobj .tif .tiff".split()
)
#: trailing name parts that say what a file is, not which case it belongs to ("C001_mask.aim")
ROLE_SUFFIXES = (
    "mask", "seg", "segmentation", "label", "labels", "ref", "reference", "truth", "gt", "manual",
    "pred", "predicted", "prediction", "auto", "prob", "probability", "probabilities",
)
_ROLE_RE = re.compile(r"[_\-. ](" + "|".join(ROLE_SUFFIXES) + r")$", re.IGNORECASE)


def strip_vms_version(name: str) -> str:
    """``name`` without an OpenVMS version: Scanco files copied from the scanner keep one ("C0001234.AIM;1")."""
    base, sep, version = name.rpartition(";")
    return base if sep and (version.isdigit() or not version) else name


def scan_suffix(name: str, suffixes=SCAN_SUFFIXES) -> str | None:
    """The scan suffix ``name`` ends with (lower case; any VMS version ignored), or None."""
    lower = strip_vms_version(name).lower()
    return next((s for s in sorted(suffixes, key=len, reverse=True) if lower.endswith(s)), None)


def scan_stem(name: str, suffixes=SCAN_SUFFIXES) -> str | None:
    """``name`` without its VMS version and scan suffix ("C0001234.AIM;1" -> "C0001234"); None when it
    has no scan suffix or nothing before it."""
    name = strip_vms_version(name)
    suffix = scan_suffix(name, suffixes)
    return (name[: -len(suffix)] or None) if suffix else None


def is_side_file(name: str) -> bool:
    """Whether the name says the file is never a scan (a table, a picture, a contour, a TIFF ...)."""
    lower = strip_vms_version(name).lower()
    return any(lower.endswith(s) for s in SIDE_FILE_SUFFIXES)


def case_name(source: str | Path | None, fallback: str = "case") -> str:
    """A case's default name: the scan's file (or DICOM folder) name without its VMS version and
    scan suffix ("C0001234.AIM;1" -> "C0001234", "sub.01.nii.gz" -> "sub.01")."""
    if not source:
        return fallback
    name = strip_vms_version(PurePath(str(source)).name)
    return scan_stem(name) or name or fallback


def case_id_of(path: Path) -> tuple[str, bool] | None:
    """(case id, whether the name carried a role suffix such as ``_mask``), or None for other files:
    how evaluation matches a scan, its reference and a prediction in three folders."""
    if path.name.startswith("."):
        return None
    stem = path.name if path.is_dir() else scan_stem(path.name)
    if not stem:
        return None
    match = _ROLE_RE.search(stem)
    if match and match.start() > 0:
        return stem[: match.start()], True
    return stem, False


def relative_case_id(rel: Path, keep_suffix: bool = False) -> str:
    """A batch's case id: the path below the input folder without the scan suffix, "/"-separated
    (``keep_suffix``: with the suffix's dots as underscores, for two scans of one stem)."""
    name = strip_vms_version(rel.name)
    if keep_suffix:
        stem = name.replace(".", "_")
    else:
        stem = scan_stem(name, BATCH_SCAN_SUFFIXES) or name
    parts = [*rel.parent.parts, stem] if str(rel.parent) != "." else [stem]
    return "/".join(parts)


def training_mask_candidates(folder: Path, case: str, suffix: str) -> list[Path]:
    """Where the mask of the training image ``{case}{suffix}`` in ``folder`` may be, in order."""
    return [folder / pattern.format(case=case, suffix=suffix) for pattern in TRAINING_MASK_PATTERNS]
