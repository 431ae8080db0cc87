"""vBMD of a scan under a mask: D100, its SD, volume, slices, slice area, per-slice profile."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

from .errors import VbmdError
from .scan import Scan, align_mask


@dataclass
class SliceProfile:
    slice_index: list[int] = field(default_factory=list)
    area_mm2: list[float] = field(default_factory=list)
    density_mg_ha_cm3: list[float] = field(default_factory=list)
    n_voxels: list[int] = field(default_factory=list)


@dataclass
class VbmdResult:
    d100_mg_ha_cm3: float
    sd_mg_ha_cm3: float
    n_voxels: int
    volume_mm3: float
    n_slices: int
    mean_slice_area_mm2: float
    first_slice: int
    last_slice: int
    profile: SliceProfile
    #: what the figures rest on besides the files' own word (a user's override, a user's spacing)
    notes: list[str] = field(default_factory=list)

    def to_dict(self, profile: bool = True) -> dict:
        out = asdict(self)
        if not profile:
            out.pop("profile")
        return out


def measure_vbmd(
    image: Scan,
    mask: Scan | np.ndarray,
    slices: tuple[int, int] | None = None,
    allow_other_scan: bool = False,
) -> VbmdResult:
    """Mean density (D100) and friends of ``image`` inside ``mask``.

    ``slices`` limits the measurement to slices [first, last) of the image, as a standardised
    region would. The density is computed in float64 so that D100 is exact to the stored integers.
    A mask whose file names another measurement than the scan's (Scanco logs and headers) is
    refused unless ``allow_other_scan``; the result's notes then say so. Voxels that are not finite
    numbers inside the mask, and results that are not, are refused.
    """
    if image.kind != "image":
        raise VbmdError("the scan to measure is a mask, not a greyscale image", image.source)
    image.require_spacing("measuring volumes and areas")
    notes = []
    if image.header.get("spacing_source"):
        notes.append(f"voxel size {', '.join(f'{s:g}' for s in image.spacing)} mm from the {image.header['spacing_source']}")
    if str(image.header.get("calibration_source", "")).startswith("user, overriding"):
        notes.append(f"calibration: {image.header['calibration_source']}")
    if isinstance(mask, Scan):
        from .io.identity import identity_mismatch

        mismatch = identity_mismatch(mask, image)
        if mismatch and not allow_other_scan:
            raise VbmdError(f"{mismatch} (a mask of another scan; --allow-other-scan measures it anyway)",
                            mask.source or "mask")
        if mismatch:
            notes.append(f"mask {mismatch}; measured as asked (--allow-other-scan)")
        inside = align_mask(mask, image)
        where = mask.source
    else:
        inside = np.asarray(mask) != 0
        where = None
        if inside.shape != image.shape:
            raise VbmdError(f"mask shape {inside.shape} differs from the scan's {image.shape}")
    if slices is not None:
        first, last = (int(v) for v in slices)
        if first >= last:
            raise VbmdError(f"slice range {first}:{last} is empty or reversed (FIRST must be below LAST)")
        if not (0 <= first < last <= image.shape[0]):
            raise VbmdError(f"slice range {first}:{last} is outside the scan's 0:{image.shape[0]}")
        inside = inside.copy()
        inside[:first] = False
        inside[last:] = False
    if not inside.any():
        raise VbmdError("the mask is empty: there is nothing to measure", where or image.source)

    z_with_bone = np.flatnonzero(inside.any(axis=(1, 2)))
    z0, z1 = int(z_with_bone[0]), int(z_with_bone[-1]) + 1
    ys, xs = np.nonzero(inside[z0:z1].any(axis=0))
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    sub_mask = inside[z0:z1, y0:y1, x0:x1]
    sub_image = image.with_data(image.data[z0:z1, y0:y1, x0:x1], origin=image.origin)
    density = sub_image.density().astype(np.float64) if image.unit != "native" else _native_density(sub_image)
    values = density[sub_mask]
    n = int(values.size)
    finite = np.isfinite(values)
    if not finite.all():
        raise VbmdError(f"{n - int(finite.sum())} of the {n} voxels inside the mask are not finite numbers "
                        "(NaN or infinity): the scan is damaged or its calibration overflows", image.source)
    voxel_area = image.spacing[1] * image.spacing[2]
    per_slice_n = sub_mask.sum(axis=(1, 2))
    per_slice_sum = np.where(sub_mask, density, 0.0).sum(axis=(1, 2))
    present = per_slice_n > 0
    profile = SliceProfile(
        slice_index=[int(z0 + i) for i in np.flatnonzero(present)],
        area_mm2=[float(c * voxel_area) for c in per_slice_n[present]],
        density_mg_ha_cm3=[float(s / c) for s, c in zip(per_slice_sum[present], per_slice_n[present])],
        n_voxels=[int(c) for c in per_slice_n[present]],
    )
    n_slices = int(present.sum())
    result = VbmdResult(
        d100_mg_ha_cm3=float(values.mean()),
        sd_mg_ha_cm3=float(values.std(ddof=1)) if n > 1 else 0.0,
        n_voxels=n,
        volume_mm3=float(n * image.voxel_volume_mm3),
        n_slices=n_slices,
        mean_slice_area_mm2=float(n * voxel_area / n_slices),
        first_slice=z0,
        last_slice=z1 - 1,
        profile=profile,
        notes=notes,
    )
    figures = [result.d100_mg_ha_cm3, result.sd_mg_ha_cm3, result.volume_mm3, result.mean_slice_area_mm2,
               *profile.area_mm2, *profile.density_mg_ha_cm3]
    if not np.all(np.isfinite(figures)):
        raise VbmdError("the figures are not finite numbers (the densities or the voxel size overflow)", image.source)
    return result


def _native_density(scan: Scan) -> np.ndarray:
    if scan.calibration is None:
        return scan.density()  # raises the clear "no calibration" error
    cal = scan.calibration
    return scan.data.astype(np.float64) * (cal.density_slope / cal.mu_scaling) + cal.density_intercept
