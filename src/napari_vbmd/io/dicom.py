"""DICOM series (a folder of slices) through pydicom, including old files with no preamble."""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .._atomic import non_regular_reason
from ..errors import VbmdError, one_line, quiet_logs
from ..scan import UNIT_HU, UNIT_UNKNOWN, Scan


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
        with quiet_logs("pydicom"):
            ds = pydicom.dcmread(str(path), force=True)
    except (InvalidDicomError, OSError, ValueError, EOFError, TypeError, KeyError, IndexError, AttributeError):
        return None
    except Exception:  # pydicom raises many things on foreign bytes
        return None
    if "PixelData" not in ds or "Rows" not in ds or "Columns" not in ds:
        return None
    _ensure_transfer_syntax(ds)
    return ds


def _ensure_transfer_syntax(ds) -> None:
    """Old files written without the DICOM preamble also lack file meta; infer its transfer syntax
    from how pydicom actually decoded the elements."""
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRBigEndian, ExplicitVRLittleEndian, ImplicitVRLittleEndian

    meta = getattr(ds, "file_meta", None)
    if meta is not None and "TransferSyntaxUID" in meta:
        return
    if meta is None:
        ds.file_meta = meta = FileMetaDataset()
    implicit, little = getattr(ds, "original_encoding", (True, True))
    if implicit:
        meta.TransferSyntaxUID = ImplicitVRLittleEndian
    else:
        meta.TransferSyntaxUID = ExplicitVRLittleEndian if little else ExplicitVRBigEndian


def is_dicom_file(path: Path) -> bool:
    if non_regular_reason(path):
        return False
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Files without the preamble start straight with a group 0x0008 (or 0x0002) element.
    return len(head) >= 4 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0


def _numbers(ds, keyword: str, n: int, where: Path, required: bool = True):
    """A tag's values as n finite floats; None when absent and not required; else a one-line refusal."""
    if keyword not in ds:
        if required:
            raise VbmdError(f"has no {keyword}", where)
        return None
    try:
        raw = ds[keyword].value
        many = isinstance(raw, Iterable) and not isinstance(raw, (str, bytes))
        values = [float(v) for v in (raw if many else [raw])]
    except (TypeError, ValueError, OverflowError):
        raise VbmdError(f"{keyword} is not numeric ({ds[keyword].value!r})", where) from None
    if len(values) != n:
        raise VbmdError(f"{keyword} has {len(values)} value(s); {n} are needed", where)
    if not all(np.isfinite(v) for v in values):
        raise VbmdError(f"{keyword} holds a non-finite number ({_listed(values)})", where)
    return np.array(values, dtype=float)


def _listed(values) -> str:
    return "none" if values is None else "[" + ", ".join(f"{float(v):g}" for v in values) + "]"


def _one_number(ds, keyword: str, default: float | None, where: Path) -> float | None:
    value = _numbers(ds, keyword, 1, where, required=False)
    return default if value is None else float(value[0])


def _orientation(ds, where: Path, n_slices: int) -> tuple[np.ndarray, str | None]:
    """Row and column direction cosines (6 numbers): unit length and at right angles, or refused."""
    orientation = _numbers(ds, "ImageOrientationPatient", 6, where, required=n_slices > 1)
    if orientation is None:  # one slice without orientation: drawn in the scanner's axes
        return np.array([1.0, 0, 0, 0, 1.0, 0]), "ImageOrientationPatient absent: axes taken as the patient's"
    row, col = orientation[:3], orientation[3:]
    lengths = np.linalg.norm(row), np.linalg.norm(col)
    if not all(abs(length - 1) < 1e-3 for length in lengths):
        raise VbmdError(f"ImageOrientationPatient's direction vectors have lengths {lengths[0]:.4g} and "
                        f"{lengths[1]:.4g}, not 1 (scaled or corrupt orientation)", where)
    if abs(float(row @ col)) > 1e-3:
        raise VbmdError("ImageOrientationPatient's row and column directions are not at right angles", where)
    return orientation, None


def read_dicom_series(path: str | Path) -> Scan:
    """Read a folder (or one file, or a file's folder) of DICOM slices of one series.

    Every slice must be whole and agree with the others on size, pixel spacing and orientation;
    a file that looks like a slice but cannot be read refuses the series (it is never dropped).
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and not p.name.startswith("."))
    else:
        reason = non_regular_reason(path)
        if reason:
            raise VbmdError(reason, path)
        files = [path]
    if not files:
        raise VbmdError("folder is empty", path)
    datasets, unreadable = [], []
    for f in files:
        ds = _read_header(f)
        if ds is not None:
            datasets.append((f, ds))
        else:
            unreadable.append(f)
    if not datasets:
        raise VbmdError("no DICOM images found", path)
    slice_suffixes = {f.suffix.lower() for f, _ in datasets}
    for f in unreadable:  # a slice of the series that cannot be read is an error, never a gap
        if is_dicom_file(f) or f.suffix.lower() in slice_suffixes:
            raise VbmdError("looks like a slice of the series but cannot be read as DICOM (truncated or corrupt)", f)
    series = {}
    for f, ds in datasets:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))
    if len(series) > 1:
        raise VbmdError(f"holds {len(series)} DICOM series; open one series at a time", path)
    (items,) = series.values()
    try:
        with quiet_logs("pydicom"):
            return _series_to_scan(items, path)
    except VbmdError:
        raise
    except MemoryError:
        raise VbmdError("not enough memory to read this DICOM series", path) from None
    except Exception as exc:  # pydicom raises many things on malformed values
        raise VbmdError(f"malformed DICOM header ({one_line(exc)})", path) from None


def _series_to_scan(items: list, path: Path) -> Scan:
    first_file, first = items[0]
    notes = []
    orientation, note = _orientation(first, first_file, len(items))
    if note:
        notes.append(note)
    pixel_spacing = _numbers(first, "PixelSpacing", 2, first_file, required=False)
    if pixel_spacing is not None and not np.all(pixel_spacing > 0):
        raise VbmdError(f"PixelSpacing {_listed(pixel_spacing)} is not positive", first_file)
    for f, ds in items[1:]:
        other, _ = _orientation(ds, f, len(items))
        if not np.allclose(other, orientation, atol=1e-4):
            raise VbmdError(f"slice orientation {_listed(other)} differs from the series' first slice "
                            f"({_listed(orientation)})", f)
        spacing = _numbers(ds, "PixelSpacing", 2, f, required=False)
        if (spacing is None) != (pixel_spacing is None) or (
            spacing is not None and not np.allclose(spacing, pixel_spacing, rtol=1e-4)
        ):
            raise VbmdError(f"pixel spacing {_listed(spacing)} differs from the series' first slice "
                            f"({_listed(pixel_spacing)})", f)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = []
    for f, ds in items:
        ipp = _numbers(ds, "ImagePositionPatient", 3, f, required=len(items) > 1)
        positions.append(np.zeros(3) if ipp is None else ipp)
    distances = np.array([float(p @ normal) for p in positions])
    order = np.argsort(distances)
    items = [items[i] for i in order]
    distances = distances[order]
    positions = [positions[i] for i in order]
    dz = None
    if len(items) > 1:
        steps = np.diff(distances)
        if np.any(steps <= 1e-6):
            raise VbmdError("two slices share a position: not one series", path)
        if np.ptp(steps) > 0.01 * np.median(steps) + 1e-4:
            raise VbmdError(
                f"slice spacing is not uniform ({steps.min():.4g} to {steps.max():.4g} mm)", path
            )
        dz = float(np.mean(steps))
    else:
        for keyword in ("SpacingBetweenSlices", "SliceThickness"):
            value = _one_number(first, keyword, None, first_file)
            if value is not None and value > 0:
                dz = value
                break
    rows, columns = int(first.Rows), int(first.Columns)
    if rows <= 0 or columns <= 0:
        raise VbmdError(f"slice size {rows} x {columns} is empty", first_file)
    slices = []
    for f, ds in items:
        if int(getattr(ds, "SamplesPerPixel", 1) or 1) != 1:
            raise VbmdError(f"{ds.SamplesPerPixel} samples per pixel (colour): a greyscale CT slice is needed", f)
        if int(getattr(ds, "NumberOfFrames", 1) or 1) != 1:
            raise VbmdError("multi-frame DICOM files are not supported; export one file per slice", f)
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise VbmdError(f"cannot decode pixel data ({one_line(exc)})", f) from None
        if pixels.shape != (rows, columns):
            raise VbmdError(f"slice of shape {pixels.shape} differs from the series' first", f)
        slope = _one_number(ds, "RescaleSlope", 1.0, f) or 1.0
        intercept = _one_number(ds, "RescaleIntercept", 0.0, f)
        slices.append(pixels.astype(np.float32) * np.float32(slope) + np.float32(intercept))
    volume = np.stack(slices)
    if not np.all(np.isfinite(volume)):
        raise VbmdError("rescaled values are not finite (RescaleSlope/RescaleIntercept out of range)", path)
    has_rescale = "RescaleSlope" in first or "RescaleIntercept" in first
    is_ct = str(getattr(first, "Modality", "")).upper() == "CT"
    unit = UNIT_HU if (is_ct and has_rescale) else UNIT_UNKNOWN
    if np.allclose(volume, np.round(volume)) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)
    # direction columns: x (row direction), y (column direction), z (slice normal); physical x,y,z
    direction_xyz = np.column_stack([row_dir, col_dir, normal])
    origin_xyz = positions[0]
    missing = []
    if pixel_spacing is None:
        missing.append("the slices have no PixelSpacing")
    if dz is None:
        missing.append("one slice with no SliceThickness or SpacingBetweenSlices")
    spacing_known = not missing
    header = {
        "format": "dicom",
        "n_files": len(items),
        "modality": str(getattr(first, "Modality", "")),
        "manufacturer": str(getattr(first, "Manufacturer", "")),
        "series_description": str(getattr(first, "SeriesDescription", "")),
        "slice_thickness_tag": _one_number(first, "SliceThickness", 0.0, first_file) or 0.0,
        "image_orientation_patient": [float(v) for v in orientation],
        "series_instance_uid": str(getattr(first, "SeriesInstanceUID", "")),
        "study_instance_uid": str(getattr(first, "StudyInstanceUID", "")),
        "patient_id": str(getattr(first, "PatientID", "")),
        "patient_name": str(getattr(first, "PatientName", "")),
        "spacing_known": spacing_known,
    }
    if missing:
        header["spacing_note"] = "; ".join(missing)
    if notes:
        header["notes"] = notes
    ps = pixel_spacing if pixel_spacing is not None else (1.0, 1.0)
    return Scan(
        data=volume,
        spacing=(dz if dz is not None else 1.0, float(ps[0]), float(ps[1])),
        origin=tuple(origin_xyz[::-1]),
        direction=tuple(direction_xyz.flatten()),
        unit=unit,
        kind="image",
        header=header,
        source=str(path),
    )
