"""Scans to napari layer data and back, without importing napari.

A layer made from a scan carries the scan's geometry in ``scale``/``translate`` and everything
else (calibration, hand, processing log, source file) under ``metadata["vbmd"]``, so a writer or a
widget can rebuild the scan exactly.
"""
from __future__ import annotations

import dataclasses

import numpy as np

from .errors import VbmdError
from .scan import UNIT_DENSITY, Calibration, Scan

METADATA_KEY = "vbmd"

# Colours of the masks the plugin draws (Okabe & Ito's colour-blind-safe set), one per role, so the
# model's mask, a mask opened from a file (a truth, an earlier export) and Compare's differences
# are told apart at a glance. The rating study's pair (orange, blue) is its own.
MODEL_MASK_COLOUR = "#56B4E9"  # sky blue: the model's mask in the workflow
FILE_MASK_COLOUR = "#F0E442"  # yellow: a mask opened from a file
ADDED_COLOUR = "#CC79A7"  # reddish purple: in the predicted mask only
MISSING_COLOUR = "#009E73"  # bluish green: in the reference mask only


def mask_colours(colour: str) -> dict:
    """A labels colour table: background transparent, every label in ``colour``."""
    return {None: colour, 0: "transparent"}


def _scan_metadata(scan: Scan) -> dict:
    return {
        "source": scan.source,
        "spacing": list(scan.spacing),
        "origin": list(scan.origin),
        "direction": list(scan.direction),
        "calibration": None if scan.calibration is None else scan.calibration.to_dict(),
        "unit": scan.unit,
        "hand": scan.hand,
        "kind": scan.kind,
        "header": {k: v for k, v in scan.header.items() if isinstance(v, (str, int, float, tuple, list, bool))},
    }


def scan_to_layer_data(scan: Scan, name: str | None = None) -> tuple:
    """A napari layer-data tuple: masks become labels, images become densities in mg HA/cm3."""
    from pathlib import Path

    base = name or (Path(scan.source).name if scan.source else "scan")
    meta = _scan_metadata(scan)
    kwargs = {"name": base, "scale": tuple(scan.spacing), "translate": tuple(scan.origin)}
    if scan.kind == "mask":
        kwargs["metadata"] = {METADATA_KEY: meta}
        kwargs["colormap"] = mask_colours(FILE_MASK_COLOUR)
        return (np.asarray(scan.data).astype(np.uint8), kwargs, "labels")
    try:
        data = scan.density()
        meta["layer_unit"] = UNIT_DENSITY
        kwargs["name"] = f"{base} (mg HA/cm3)" if name is None else name
    except VbmdError:
        data = scan.data  # uncalibrated: shown as stored; the widgets ask what the values mean
        meta["layer_unit"] = scan.unit
    kwargs["metadata"] = {METADATA_KEY: meta}
    kwargs["colormap"] = "gray"
    lo, hi = np.percentile(data[:: max(1, data.shape[0] // 16)], [0.5, 99.9])
    if hi <= lo:
        hi = lo + 1
    kwargs["contrast_limits"] = (float(lo), float(hi))
    return (data, kwargs, "image")


def layer_spacing_known(metadata: dict | None, scale=None) -> bool:
    """Whether a layer's voxel size is known: stated by its file, or set on the layer since (a file that
    states none is shown at 1 mm per voxel; a scale other than that is the user's)."""
    meta = (metadata or {}).get(METADATA_KEY) or {}
    if (meta.get("header") or {}).get("spacing_known", True) is not False:
        return True
    return scale is not None and not np.allclose(tuple(scale)[-3:], meta.get("spacing", (1.0, 1.0, 1.0)))


def layer_to_scan(data, metadata: dict | None, scale=None, translate=None, kind: str | None = None) -> Scan:
    """Rebuild a scan from a layer's data, its metadata and (when no metadata) its scale/translate."""
    data = np.asarray(data)
    if data.ndim != 3:
        raise VbmdError(f"only 3-D layers can be saved or measured, this one is {data.ndim}-D")
    meta = (metadata or {}).get(METADATA_KEY) or {}
    spacing = tuple(scale[-3:]) if scale is not None else tuple(meta.get("spacing", (1.0, 1.0, 1.0)))
    origin = tuple(translate[-3:]) if translate is not None else tuple(meta.get("origin", (0.0, 0.0, 0.0)))
    cal = meta.get("calibration")
    calibration = Calibration(**cal) if cal else None
    kind = kind or meta.get("kind", "image")
    unit = meta.get("layer_unit", meta.get("unit", "unknown")) if kind == "image" else "unknown"
    header = dict(meta.get("header") or {})
    if header.get("spacing_known") is False and layer_spacing_known(metadata, scale):
        # the file stated no voxel size and the user has since set the layer's scale: that is the spacing
        header.update(spacing_known=True, spacing_source="napari layer scale")
        header.pop("spacing_note", None)
    return Scan(
        data=data,
        spacing=spacing,
        origin=origin,
        direction=tuple(meta.get("direction", (1, 0, 0, 0, 1, 0, 0, 0, 1))),
        calibration=calibration,
        unit=unit,
        kind=kind,
        hand=meta.get("hand"),
        header=header,
        source=meta.get("source"),
    )


def native_if_lossless(scan: Scan) -> Scan:
    """Densities that came from native integers go back to those integers (for int16 AIMs)."""
    if scan.unit != UNIT_DENSITY or scan.calibration is None:
        return scan
    native = scan.calibration.density_to_native(scan.data)
    rounded = np.round(native)
    if np.abs(native - rounded).max() < 0.02 and rounded.min() >= -32768 and rounded.max() <= 32767:
        return dataclasses.replace(scan, data=rounded.astype(np.int16), unit="native")
    return scan
