"""DICOM series (a folder of slices) through pydicom, including old files with no preamble."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import VbmdError
from ..scan import UNIT_HU, UNIT_UNKNOWN, Scan


def _read_header(path: Path):
    import pydicom
    from pydicom.errors import InvalidDicomError

    try:
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
    try:
        with open(path, "rb") as fh:
            head = fh.read(132)
    except OSError:
        return False
    if len(head) >= 132 and head[128:132] == b"DICM":
        return True
    # Files without the preamble start straight with a group 0x0008 (or 0x0002) element.
    return len(head) >= 4 and head[1] == 0 and head[0] in (0x02, 0x08) and head[3] == 0


def read_dicom_series(path: str | Path) -> Scan:
    """Read a folder (or one file, or a file's folder) of DICOM slices of one series."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    if not files:
        raise VbmdError("folder is empty", path)
    datasets = []
    for f in files:
        ds = _read_header(f)
        if ds is not None:
            datasets.append((f, ds))
    if not datasets:
        raise VbmdError("no DICOM images found", path)
    series = {}
    for f, ds in datasets:
        series.setdefault(str(getattr(ds, "SeriesInstanceUID", "")), []).append((f, ds))
    if len(series) > 1:
        raise VbmdError(f"holds {len(series)} DICOM series; open one series at a time", path)
    (items,) = series.values()
    _, first = items[0]
    orientation = np.array(getattr(first, "ImageOrientationPatient", [1, 0, 0, 0, 1, 0]), dtype=float)
    row_dir, col_dir = orientation[:3], orientation[3:]
    normal = np.cross(row_dir, col_dir)
    positions = []
    for f, ds in items:
        ipp = getattr(ds, "ImagePositionPatient", None)
        if ipp is None:
            if len(items) > 1:
                raise VbmdError("a slice has no ImagePositionPatient, so slice spacing is unknown", f)
            ipp = [0.0, 0.0, 0.0]
        positions.append(np.array(ipp, dtype=float))
    distances = np.array([float(p @ normal) for p in positions])
    order = np.argsort(distances)
    items = [items[i] for i in order]
    distances = distances[order]
    positions = [positions[i] for i in order]
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
        dz = float(getattr(first, "SpacingBetweenSlices", getattr(first, "SliceThickness", 1.0)) or 1.0)
    pixel_spacing = [float(v) for v in getattr(first, "PixelSpacing", [1.0, 1.0])]
    slices = []
    for f, ds in items:
        try:
            pixels = ds.pixel_array
        except Exception as exc:
            raise VbmdError(f"cannot decode pixel data ({exc})", f) from None
        if pixels.shape != (int(first.Rows), int(first.Columns)):
            raise VbmdError(f"slice of shape {pixels.shape} differs from the series' first", f)
        slope = float(getattr(ds, "RescaleSlope", 1.0) or 1.0)
        intercept = float(getattr(ds, "RescaleIntercept", 0.0) or 0.0)
        slices.append(pixels.astype(np.float32) * slope + intercept)
    volume = np.stack(slices)
    has_rescale = "RescaleSlope" in first or "RescaleIntercept" in first
    is_ct = str(getattr(first, "Modality", "")).upper() == "CT"
    unit = UNIT_HU if (is_ct and has_rescale) else UNIT_UNKNOWN
    if np.allclose(volume, np.round(volume)) and volume.min() >= -32768 and volume.max() <= 32767:
        volume = volume.astype(np.int16)
    # direction columns: x (row direction), y (column direction), z (slice normal); physical x,y,z
    direction_xyz = np.column_stack([row_dir, col_dir, normal])
    origin_xyz = positions[0]
    header = {
        "format": "dicom",
        "n_files": len(items),
        "modality": str(getattr(first, "Modality", "")),
        "manufacturer": str(getattr(first, "Manufacturer", "")),
        "series_description": str(getattr(first, "SeriesDescription", "")),
        "slice_thickness_tag": float(getattr(first, "SliceThickness", 0) or 0),
        "image_orientation_patient": [float(v) for v in orientation],
    }
    return Scan(
        data=volume,
        spacing=(dz, pixel_spacing[0], pixel_spacing[1]),
        origin=tuple(origin_xyz[::-1]),
        direction=tuple(direction_xyz.flatten()),
        unit=unit,
        kind="image",
        header=header,
        source=str(path),
    )
