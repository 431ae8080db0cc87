"""The value type that carries a scan (or a mask) through the engine.

Axes are always (z, y, x); spacing and origin are in millimetres in the same order. ``origin`` is
the physical position of the centre of voxel (0, 0, 0), the convention of ITK and of napari's
``translate`` (for AIM files this is ``(position + offset) * element_size``).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .errors import VbmdError

#: Units a greyscale scan's voxels can be in.
UNIT_NATIVE = "native"  # scanner integers, converted with the scan's calibration
UNIT_DENSITY = "mg_ha_cm3"  # already mg hydroxyapatite / cm^3
UNIT_HU = "hu"  # Hounsfield units (DICOM after rescale)
UNIT_UNKNOWN = "unknown"  # values of unknown meaning: the user must say what they are
UNITS = (UNIT_NATIVE, UNIT_DENSITY, UNIT_HU, UNIT_UNKNOWN)

IDENTITY_DIRECTION = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0)


@dataclass(frozen=True)
class Calibration:
    """Scanco density calibration, as the processing log of an AIM states it.

    mg HA/cm^3 = native * density_slope / mu_scaling + density_intercept
    HU         = native * 1000 / (mu_scaling * mu_water) - 1000
    """

    density_slope: float
    density_intercept: float
    mu_scaling: float = 1.0
    mu_water: float | None = None

    def __post_init__(self):
        for name in ("density_slope", "density_intercept", "mu_scaling"):
            value = getattr(self, name)
            if not np.isfinite(value):
                raise VbmdError(f"calibration {name} is not a finite number ({value!r})")
        if self.density_slope == 0:
            raise VbmdError("calibration density slope is 0: densities would all be equal")
        if self.mu_scaling <= 0:
            raise VbmdError(f"calibration mu scaling must be positive, got {self.mu_scaling!r}")
        if self.mu_water is not None and not (np.isfinite(self.mu_water) and self.mu_water > 0):
            raise VbmdError(f"calibration mu water must be positive, got {self.mu_water!r}")
        # Each number may be finite while their ratio is not (Mu_Scaling 1e-320 gives infinite densities).
        with np.errstate(all="ignore"):
            ratios = [np.float64(self.density_slope) / np.float64(self.mu_scaling)]
            if self.mu_water is not None:
                ratios.append(np.float64(1000.0) / (np.float64(self.mu_scaling) * np.float64(self.mu_water)))
        if not all(np.isfinite(r) and r != 0 for r in ratios):
            raise VbmdError(
                f"calibration gives no finite density per stored value (slope {self.density_slope!r} / "
                f"mu scaling {self.mu_scaling!r})"
            )

    @property
    def density_per_native(self) -> float:
        return self.density_slope / self.mu_scaling

    def native_to_density(self, native):
        return np.asarray(native, dtype=np.float32) * np.float32(self.density_per_native) + np.float32(
            self.density_intercept
        )

    def density_to_native(self, density):
        return (np.asarray(density, dtype=np.float64) - self.density_intercept) / self.density_per_native

    def native_to_hu(self, native):
        if self.mu_water is None:
            raise VbmdError("calibration has no mu water, so Hounsfield units cannot be computed")
        return np.asarray(native, dtype=np.float32) * np.float32(1000.0 / (self.mu_scaling * self.mu_water)) - 1000.0

    def hu_to_native(self, hu):
        if self.mu_water is None:
            raise VbmdError("calibration has no mu water, so Hounsfield units cannot be converted")
        return (np.asarray(hu, dtype=np.float64) + 1000.0) * self.mu_scaling * self.mu_water / 1000.0

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


@dataclass
class Scan:
    """Voxels (z, y, x) with their geometry, calibration and provenance."""

    data: np.ndarray
    spacing: tuple[float, float, float]
    origin: tuple[float, float, float] = (0.0, 0.0, 0.0)
    direction: tuple[float, ...] = IDENTITY_DIRECTION
    calibration: Calibration | None = None
    unit: str = UNIT_UNKNOWN
    kind: str = "image"  # "image" (greyscale) or "mask" (labels)
    hand: str | None = None  # "left", "right" or None when unknown
    header: dict[str, Any] = field(default_factory=dict)
    source: str | None = None

    def __post_init__(self):
        data = np.asarray(self.data)
        if data.ndim != 3:
            raise VbmdError(f"a scan must be 3-D (z, y, x), got {data.ndim}-D data", self.source)
        if data.size == 0:
            raise VbmdError(f"the scan is empty (shape {data.shape})", self.source)
        self.data = data
        self.spacing = tuple(float(s) for s in self.spacing)
        self.origin = tuple(float(o) for o in self.origin)
        self.direction = tuple(float(d) for d in self.direction)
        if len(self.spacing) != 3 or not all(np.isfinite(s) and s > 0 for s in self.spacing):
            raise VbmdError(f"voxel spacing must be three positive numbers, got {self.spacing}", self.source)
        if len(self.origin) != 3 or not all(np.isfinite(o) for o in self.origin):
            raise VbmdError(f"origin must be three finite numbers, got {self.origin}", self.source)
        if len(self.direction) != 9:
            raise VbmdError("direction must be a 3 x 3 matrix", self.source)
        if self.unit not in UNITS:
            raise VbmdError(f"unknown unit {self.unit!r}; expected one of {', '.join(UNITS)}", self.source)
        if self.kind not in ("image", "mask"):
            raise VbmdError(f"unknown scan kind {self.kind!r}", self.source)
        if self.hand not in (None, "left", "right"):
            raise VbmdError(f"hand must be 'left', 'right' or unknown, got {self.hand!r}", self.source)

    # -- geometry -----------------------------------------------------------------------------
    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(n) for n in self.data.shape)

    @property
    def voxel_volume_mm3(self) -> float:
        return float(np.prod(self.spacing))

    @property
    def spacing_known(self) -> bool:
        """False when the file does not state its voxel size: ``spacing`` is then a 1 mm placeholder,
        good for display only, and measuring or segmenting refuses until the user gives the spacing."""
        return bool(self.header.get("spacing_known", True))

    def require_spacing(self, what: str = "measuring") -> None:
        if not self.spacing_known:
            why = self.header.get("spacing_note") or "the file does not state it"
            raise VbmdError(
                f"voxel size is unknown ({why}); {what} needs it: give it with --spacing Z Y X (mm)", self.source
            )

    def same_grid(self, other: "Scan", rtol: float = 1e-4) -> bool:
        return (
            self.shape == other.shape
            and np.allclose(self.spacing, other.spacing, rtol=rtol)
            and np.allclose(self.origin, other.origin, atol=1e-3 * min(self.spacing))
            and np.allclose(self.direction, other.direction, atol=1e-6)
        )

    def with_data(self, data: np.ndarray, **changes) -> "Scan":
        """A copy with new voxels on the same grid (and optionally other fields changed)."""
        data = np.asarray(data)
        if data.shape != self.data.shape and "origin" not in changes:
            raise ValueError(f"new data shape {data.shape} differs from {self.data.shape}")
        changes.setdefault("header", dict(self.header))
        return dataclasses.replace(self, data=data, **changes)

    # -- values -------------------------------------------------------------------------------
    def density(self, region: tuple[slice, ...] | None = None) -> np.ndarray:
        """Voxels in mg HA/cm^3 (float32); refuses when the meaning of the values is unknown. ``region``: a
        tuple of slices (z, y, x) to convert only that block of a large field."""
        if self.kind != "image":
            raise VbmdError("a mask has no density", self.source)
        data = self.data if region is None else self.data[region]
        if self.unit == UNIT_DENSITY:
            return data.astype(np.float32, copy=False)
        if self.calibration is None:
            raise VbmdError(
                "no density calibration: say what the values are (already mg HA/cm3, "
                "or a density slope and intercept)",
                self.source,
            )
        if self.unit == UNIT_NATIVE:
            return self.calibration.native_to_density(data)
        if self.unit == UNIT_HU:
            return self.calibration.native_to_density(self.calibration.hu_to_native(data)).astype(np.float32)
        raise VbmdError(
            "the values' unit is unknown: say whether they are native, HU or mg HA/cm3", self.source
        )

    def hounsfield(self) -> np.ndarray:
        if self.unit == UNIT_HU:
            return self.data.astype(np.float32, copy=False)
        if self.calibration is None or self.unit != UNIT_NATIVE:
            raise VbmdError("Hounsfield units need native values and a calibration with mu water", self.source)
        return self.calibration.native_to_hu(self.data)

    def describe(self) -> dict:
        """The JSON-friendly summary `vbmd info` prints."""
        return {
            "path": self.source,
            "kind": self.kind,
            "shape": list(self.shape),
            "spacing_mm": list(self.spacing) if self.spacing_known else "unknown",
            "spacing_note": self.header.get("spacing_note"),
            "origin_mm": list(self.origin),
            "direction": list(self.direction),
            "dtype": str(self.data.dtype),
            "unit": self.unit,
            "hand": self.hand,
            "calibration": None if self.calibration is None else self.calibration.to_dict(),
            "calibration_source": calibration_source(self),
            "calibration_note": self.header.get("calibration_note"),
            "format": self.header.get("format"),
        }


def calibration_source(scan: Scan) -> str | None:
    """Where the meaning of a scan's values comes from: the file, the user, or nowhere (None)."""
    if "calibration_source" in scan.header:
        return scan.header["calibration_source"]
    if scan.kind != "image":
        return None
    if scan.calibration is not None or scan.unit == UNIT_DENSITY:
        return "file"
    return None


def calibration_line(scan: Scan) -> str:
    """What a scan's values mean and who said so, in one line: 'density = stored value * 0.175918 + -356.445
    (file)', 'values are mg HA/cm3 (user)', '- (none)'."""
    source = calibration_source(scan) or "none"
    cal = scan.calibration
    if scan.unit == UNIT_DENSITY:
        what = "values are mg HA/cm3"
    elif cal is not None:
        what = f"density = stored value * {cal.density_per_native:.6g} + {cal.density_intercept:.6g}"
    else:
        what = "-"
    return f"{what} ({source})"


def spacing_line(scan: Scan) -> str:
    """The voxel size and who said so: '0.082 x 0.082 x 0.082 mm (file)', '... (user (Run form))', 'unknown'."""
    if not scan.spacing_known:
        return "unknown"
    return f"{' x '.join(f'{s:g}' for s in scan.spacing)} mm ({scan.header.get('spacing_source') or 'file'})"


def _own_calibration(scan: Scan) -> str | None:
    """A one-line account of the calibration a file states itself, or None when it states none."""
    if scan.unit == UNIT_DENSITY and calibration_source(scan) == "file":
        return "values already mg HA/cm3"
    if scan.calibration is not None and calibration_source(scan) == "file":
        cal = scan.calibration
        return (f"density slope {cal.density_slope:g}, intercept {cal.density_intercept:g}, "
                f"mu scaling {cal.mu_scaling:g}")
    return None


def apply_user_calibration(
    scan: Scan,
    units: str | None = None,
    slope: float | None = None,
    intercept: float | None = None,
    override: bool = False,
    if_calibrated: str = "refuse",
) -> Scan:
    """Say what an uncalibrated scan's values mean (the user's word, never a guess).

    ``units="mg_ha_cm3"`` marks values as densities already; ``slope``/``intercept`` give
    density = value * slope + intercept. A file that states its own calibration is refused (one
    line) unless ``override`` is set; the scan then records that the user's word replaced the
    file's (``header["calibration_source"]``). ``if_calibrated="keep"`` (cohorts of mixed files)
    applies the user's word only to files without a calibration of their own.
    """
    if units is not None and (slope is not None or intercept is not None):
        raise VbmdError("give either --units or --slope/--intercept, not both", scan.source)
    if units is None and slope is None and intercept is None:
        return scan
    own = _own_calibration(scan)
    if own is not None:
        if if_calibrated == "keep" and not override:
            return scan
        if not override:
            raise VbmdError(
                f"the file states its own calibration ({own}); --units/--slope/--intercept are for files "
                "without one (add --override-calibration to replace it)",
                scan.source,
            )
    source = "user" if own is None else f"user, overriding the file's ({own})"
    header = {**scan.header, "calibration_source": source}
    if slope is not None or intercept is not None:
        if slope is None or intercept is None:
            raise VbmdError("give both a density slope and a density intercept", scan.source)
        calibration = Calibration(density_slope=float(slope), density_intercept=float(intercept), mu_scaling=1.0)
        return dataclasses.replace(scan, calibration=calibration, unit=UNIT_NATIVE, header=header)
    if units not in UNITS or units == UNIT_UNKNOWN:
        raise VbmdError(f"unknown units {units!r}; use native, hu or mg_ha_cm3", scan.source)
    if units in (UNIT_NATIVE, UNIT_HU) and scan.calibration is None:
        raise VbmdError(f"values said to be {units} but the file has no calibration", scan.source)
    return dataclasses.replace(scan, unit=units, header=header)


def apply_user_spacing(scan: Scan, spacing, said_by: str = "--spacing") -> Scan:
    """Give a scan whose file states no voxel size the user's (z, y, x) spacing in mm.

    A file that states its spacing keeps it: a different one from the user is refused. ``said_by`` names
    where the user said it (recorded as the spacing's source and used in the refusals).
    """
    if spacing is None:
        return scan
    try:
        values = tuple(float(v) for v in spacing)
    except (TypeError, ValueError):
        raise VbmdError(f"{said_by} must be three numbers in mm (z y x), got {spacing!r}", scan.source) from None
    if len(values) != 3 or not all(np.isfinite(v) and 0 < v <= 100 for v in values):
        raise VbmdError(f"{said_by} must be three positive sizes in mm up to 100 (z y x), got {spacing!r}", scan.source)
    if scan.spacing_known:
        if np.allclose(values, scan.spacing, rtol=1e-4):
            return scan
        raise VbmdError(
            f"the file states its voxel size ({', '.join(f'{v:g}' for v in scan.spacing)} mm); {said_by} "
            f"{' '.join(f'{v:g}' for v in values)} contradicts it ({said_by} is for files without one)",
            scan.source,
        )
    header = {**scan.header, "spacing_known": True, "spacing_source": f"user ({said_by})"}
    header.pop("spacing_note", None)
    return dataclasses.replace(scan, spacing=values, header=header)


def align_mask(mask: Scan, image: Scan) -> np.ndarray:
    """The mask as a boolean array on the image's grid.

    A mask on another grid is accepted only when the geometry says how the two align: the same
    voxel size and orientation, and an origin offset of whole voxels (a GOBJ or a cropped mask AIM
    of the same scan). Parts of the mask outside the image are refused, not silently cut.
    """
    data = np.asarray(mask.data) != 0
    where = mask.source or "mask"
    if not mask.spacing_known:
        if mask.shape == image.shape:
            return data  # a mask without a voxel size of its own, voxel for voxel on the scan
        raise VbmdError(f"states no voxel size and its shape {mask.shape} differs from the scan's {image.shape}: "
                        "the grids cannot be aligned", where)
    if mask.same_grid(image):
        return data
    if not np.allclose(mask.spacing, image.spacing, rtol=1e-3):
        raise VbmdError(
            f"voxel size {_fmt(mask.spacing)} mm differs from the scan's {_fmt(image.spacing)} mm", where
        )
    if not np.allclose(mask.direction, image.direction, atol=1e-4):
        raise VbmdError("orientation differs from the scan's", where)
    shift = (np.array(mask.origin) - np.array(image.origin)) / np.array(image.spacing)
    index = np.round(shift).astype(int)
    if np.any(np.abs(shift - index) > 0.01):
        raise VbmdError(
            f"origin is {_fmt(shift)} voxels from the scan's, not a whole number: the grids do not align", where
        )
    if mask.shape == image.shape and not np.any(index):
        return data
    out = np.zeros(image.shape, dtype=bool)
    src = []
    dst = []
    for axis in range(3):
        start = index[axis]
        lo, hi = max(start, 0), min(start + mask.shape[axis], image.shape[axis])
        if hi <= lo:
            if data.any():
                raise VbmdError("lies entirely outside the scan", where)
            return out
        dst.append(slice(lo, hi))
        src.append(slice(lo - start, hi - start))
    inside = data[tuple(src)]
    if int(inside.sum()) != int(data.sum()):
        outside = int(data.sum()) - int(inside.sum())
        raise VbmdError(f"{outside} mask voxels lie outside the scan's field of view", where)
    out[tuple(dst)] = inside
    return out


def _fmt(values) -> str:
    return "(" + ", ".join(f"{v:.4g}" for v in values) + ")"
