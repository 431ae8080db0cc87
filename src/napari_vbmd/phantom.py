"""Synthetic HR-pQCT scans of the metacarpophalangeal (MCP) joint with known truth.

A phantom is an XtremeCT-style calibrated int16 volume of a right or left hand at the level of the
second and third MCP joints, with the second metacarpal (MC2) as the bone of interest and its
periosteal envelope as the truth mask. Anatomy is defined in millimetres by analytic signed
distances (so any voxel size gives the same bones), rendered slab by slab, blurred with the
scanner's point spread function, given motion artefacts and noise, and quantised with the
scanner's calibration.

Axes are (z, y, x). z runs along the bones from distal (slice 0: base of the proximal phalanx,
joint space) to proximal (MC2 head, neck, shaft); y runs dorsal (small y) to palmar; x runs, for a
right hand, from the radial side (MC2) to the ulnar side (MC3, MC4, MC5). A left hand is the exact
mirror image of the right hand in x.

Truth convention: the mask is the MC2 periosteal envelope, solid (cortex plus marrow space), as an
expert contour would draw it. An erosion cavity opens to the outside of the bone, so it is NOT bone:
the truth mask excludes it (the contour follows the eroded surface into the pit).
See docs/phantoms.md.
"""
from __future__ import annotations

import dataclasses
import math
import time
from typing import Callable

import numpy as np
from scipy import ndimage

from . import phantom_pose
from .errors import CancelledError, VbmdError
from .phantom_anatomy import (  # noqa: F401  (re-exported: the phantom's public constants and helpers)
    COHORT_D100_MEAN, COHORT_D100_RANGE, COHORT_D100_SD, FAT, MUSCLE, SKIN, SYNOVIUM, TENDON, _Anatomy,
    _draw_anatomy,
)
from .phantom_cohort import (  # noqa: F401
    COHORT_COLUMNS, case_seed, cohort_cases, cohort_specs, generate_cohort, phantom_is_cached, phantom_paths,
    write_phantom,
)
from .phantom_render import _Grid, _mc2_cortex_volume, _mc2_design_sums, _Renderer
from .phantom_scanner import NOISE_KERNEL_XY, NOISE_KERNEL_Z, _Motion, _NoiseField, _processing_log  # noqa: F401
from .phantom_spec import (  # noqa: F401
    CROPPED_FOV_MM, CROPPED_UNCHANGED_SINCE, DEFAULT_SLICES, FULL_FOV_MM, FULL_FOV_VOXELS, GENERATOR_NAME,
    GENERATOR_VERSION, MAX_SLICES, NATIVE_SPACING_MM, SCANNER_CALIBRATIONS, SCANNER_NAMES, SCANNER_NOISE_MG,
    VARIATIONS, Phantom, PhantomSpec, Progress,
)
from .phantom_texture import _Textures
from .scan import UNIT_NATIVE, Calibration, Scan

__all__ = [
    "COHORT_COLUMNS", "COHORT_D100_MEAN", "COHORT_D100_RANGE", "COHORT_D100_SD", "CROPPED_FOV_MM",
    "CROPPED_UNCHANGED_SINCE", "DEFAULT_SLICES", "FAT", "FULL_FOV_MM", "FULL_FOV_VOXELS", "GENERATOR_NAME",
    "GENERATOR_VERSION", "MAX_SLICES", "MUSCLE", "NATIVE_SPACING_MM", "NOISE_KERNEL_XY", "NOISE_KERNEL_Z",
    "SCANNER_CALIBRATIONS", "SCANNER_NAMES", "SCANNER_NOISE_MG", "SKIN", "SYNOVIUM", "TENDON", "VARIATIONS",
    "Phantom", "PhantomSpec", "Progress", "case_seed", "cohort_cases", "cohort_specs", "generate_cohort",
    "generate_phantom", "phantom_is_cached", "phantom_paths", "write_phantom",
]

_SLAB = 16  # slices rendered at once; fixed so noise streams do not depend on memory


# ---------------------------------------------------------------------------------------------
# Generation
# ---------------------------------------------------------------------------------------------
def _streams(seed):
    names = ("anatomy", "density", "scanner", "erosion", "texture", "motion", "layout", "noise", "hand", "broad")
    return {name: np.random.default_rng(np.random.SeedSequence([0x5BD, seed, i])) for i, name in enumerate(names)}


def _layout(spec: PhantomSpec, anatomy: _Anatomy, rng) -> _Grid:
    h = spec.spacing_mm
    full_n = int(round(FULL_FOV_MM / h))
    cxh, cyh = anatomy.hand_centre
    c, s = math.cos(anatomy.rotation), math.sin(anatomy.rotation)

    def to_scanner(x, y):
        return cxh + c * (x - cxh) - s * (y - cyh), cyh + s * (x - cxh) + c * (y - cyh)

    mc2 = anatomy.bones[0]
    if spec.fov == "cropped":
        x2, y2 = to_scanner(mc2.cx, mc2.cy)
        ny = int(round(CROPPED_FOV_MM[0] / h))
        nx = int(round(CROPPED_FOV_MM[1] / h))
        x_start = x2 - mc2.a_head - rng.uniform(3.0, 5.0)
        y_start = y2 - CROPPED_FOV_MM[0] / 2 + rng.uniform(-2.0, 2.0)
        x0 = int(np.clip(round(x_start / h), 0, full_n - nx))
        y0 = int(np.clip(round(y_start / h), 0, full_n - ny))
        box = (y0, y0 + ny, x0, x0 + nx)
        return _Grid(h, spec.n_slices, full_n, box, (y0, x0), (spec.n_slices, ny, nx))
    if not spec.thumb:  # generator 2's region: the rotated envelope's half-sizes, + 6 mm (its exact arithmetic)
        (hx, hy), (ax, ay) = anatomy.hand_centre, anatomy.hand_half
        half_x, half_y = (abs(c) * ax + abs(s) * ay) + 6.0, (abs(s) * ax + abs(c) * ay) + 6.0
        if abs(anatomy.rotation) <= 1e-9:
            half_x, half_y = ax + 6.0, ay + 6.0
        y0, y1 = max(int(math.floor((hy - half_y) / h)), 0), min(int(math.ceil((hy + half_y) / h)), full_n)
        x0, x1 = max(int(math.floor((hx - half_x) / h)), 0), min(int(math.ceil((hx + half_x) / h)), full_n)
        return _Grid(h, spec.n_slices, full_n, (y0, y1, x0, x1), (0, 0), (spec.n_slices, full_n, full_n))
    from .phantom_hand import hand_bounds

    # the hand's envelope and the thumb's lobe (which moves radially towards slice 0), rotated, + 6 mm
    bx0, bx1, by0, by1 = hand_bounds(anatomy)
    corners = [to_scanner(x, y) for x in (bx0, bx1) for y in (by0, by1)]
    y0 = max(int(math.floor((min(y for _, y in corners) - 6.0) / h)), 0)
    y1 = min(int(math.ceil((max(y for _, y in corners) + 6.0) / h)), full_n)
    x0 = max(int(math.floor((min(x for x, _ in corners) - 6.0) / h)), 0)
    x1 = min(int(math.ceil((max(x for x, _ in corners) + 6.0) / h)), full_n)
    return _Grid(h, spec.n_slices, full_n, (y0, y1, x0, x1), (0, 0), (spec.n_slices, full_n, full_n))


def generate_phantom(spec: PhantomSpec | None = None, progress: Progress | None = None,
                     cancel: Callable[[], bool] | None = None) -> Phantom:
    """Make one phantom. Deterministic: the same spec gives the same voxels."""
    spec = (spec or PhantomSpec()).validated()
    started = time.perf_counter()
    rngs = _streams(spec.seed)
    anatomy = _draw_anatomy(spec, rngs["anatomy"], rngs["density"], rngs["scanner"], rngs["erosion"],
                            rngs["hand"] if spec.thumb else None,
                            rngs["broad"])
    grid = _layout(spec, anatomy, rngs["layout"])
    pose = phantom_pose.pose_of(spec.seed, spec.pose_seed)
    if pose is not None:  # the field stays where the unposed scan had it; the hand moves within it
        delta = math.radians(pose["rotation_deg"])
        anatomy = dataclasses.replace(anatomy, rotation=anatomy.rotation + delta)
        grid = dataclasses.replace(grid, pose_rotation=delta, pose_shift_mm=pose["shift_mm_yx"])
    calibration = SCANNER_CALIBRATIONS[spec.scanner]
    h = spec.spacing_mm

    # trabecular bone fraction that gives the D100 target (blur moves cortex out of the mask)
    probe = 0.2
    sums = _mc2_design_sums(spec, anatomy, grid, probe)
    if sums is None:
        raise VbmdError("phantom: MC2 is not in the volume; use more slices")
    base, per_fraction, surface_ratio = sums
    leak = (anatomy.bones[0].cortical_density - MUSCLE) * anatomy.psf_sigma_mm / math.sqrt(2 * math.pi) * surface_ratio
    trab_fraction = float(np.clip((anatomy.d100_target + leak - base) / max(per_fraction, 1e-6), 0.02, 0.6))

    textures = _Textures(rngs["texture"], h, anatomy.trabecular_wavelength, anatomy.texture_bandwidth,
                         anatomy.texture_z_stretch, anatomy.texture_kind)
    renderer = _Renderer(spec, anatomy, textures, grid, trab_fraction)
    motion = _Motion(spec.motion_grade, rngs["motion"] if pose is None else phantom_pose.motion_rng(spec.seed, spec.pose_seed),
                     grid)

    nz, ny_out, nx_out = grid.out_shape
    image = np.empty(grid.out_shape, dtype=np.int16)
    truth = np.zeros(grid.out_shape, dtype=np.uint8)
    by0, by1, bx0, bx1 = grid.box
    oy, ox = grid.out_origin_yx
    ry, rx = slice(by0 - oy, by1 - oy), slice(bx0 - ox, bx1 - ox)
    sigma_vox = anatomy.psf_sigma_mm / h
    halo = int(math.ceil(3 * sigma_vox)) + 1
    noise_sd = anatomy.noise_mg * float(np.clip((NATIVE_SPACING_MM / h) ** 1.5, 0.2, 1.0))
    per_native = calibration.density_per_native
    air = calibration.density_intercept
    inner_slabs = []
    n_slabs = (nz + _SLAB - 1) // _SLAB
    rendered = None
    noise = _NoiseField(spec.seed if pose is None else pose["noise_seed"], (ny_out, nx_out), noise_sd)
    for slab_index in range(n_slabs):
        if cancel is not None and cancel():
            raise CancelledError()
        k0, k1 = slab_index * _SLAB, min((slab_index + 1) * _SLAB, nz)
        if rendered is None:
            design, truth_slab, inner_slab, _ = renderer.design(k0 - halo, k1 + halo, want_truth=True)
        else:
            # the blur's halo overlaps the previous slab: reuse those slices (each slice's design
            # depends on its own z only), render the rest
            start, previous = rendered
            reused = [part[k0 - halo - start:] for part in previous]
            fresh = renderer.design(start + previous[0].shape[0], k1 + halo, want_truth=True)[:3]
            design, truth_slab, inner_slab = (np.concatenate([old, new]) for old, new in zip(reused, fresh))
        rendered = (k0 - halo, (design, truth_slab, inner_slab))
        blurred = ndimage.gaussian_filter(design, sigma_vox, mode="nearest", truncate=3.0)[halo:halo + k1 - k0]
        truth_slab = truth_slab[halo:halo + k1 - k0]
        inner_slab = inner_slab[halo:halo + k1 - k0]
        blurred = motion.apply(blurred, k0)
        if spec.fov == "full":
            full = noise.slab(k0, k1)
            full += np.float32(air)
            full[:, ry, rx] += blurred - np.float32(air)
        else:
            full = noise.slab(k0, k1)
            full += blurred
        native = full  # in place: a full-field slab is 150 MB per copy
        native -= np.float32(air)
        native /= np.float32(per_native)
        np.rint(native, out=native)
        np.clip(native, -32768, 32767, out=native)
        image[k0:k1] = native
        truth[k0:k1, ry, rx] = truth_slab
        inner_slabs.append((k0, k1, inner_slab))
        if progress is not None:
            progress(slab_index + 1, n_slabs, f"rendering slices {k0}-{k1 - 1}")

    # cortical volume of MC2 (design, full resolution, within the volume)
    mc2_cortex = _mc2_cortex_volume(renderer, grid)

    # hit the D100 target: a constant offset deep in MC2's marrow space (typically within +-10 mg
    # HA/cm3; at most 40, so a volume too short to hold the target, e.g. only the cortical tip of
    # the head, keeps realistic marrow and misses the target; the truth is what the image holds)
    inside = truth.view(bool)  # 0/1 uint8: a view, not a copy of a possibly 1536 x 1536 x N mask
    if not inside.any():
        raise VbmdError("phantom: MC2 is not in the volume; use more slices")
    d100 = _d100(image, inside, calibration)
    n_inner = sum(int(m.sum()) for _, _, m in inner_slabs)
    offset_mg = (anatomy.d100_target - d100) * inside.sum() / n_inner if n_inner else 0.0
    offset_native = int(round(float(np.clip(offset_mg, -40.0, 40.0)) / per_native))
    if offset_native:
        for k0, k1, inner_slab in inner_slabs:
            view = image[k0:k1, ry, rx]
            view[inner_slab] = np.clip(view[inner_slab].astype(np.int32) + offset_native, -32768, 32767).astype(np.int16)

    if spec.hand == "left":
        for k0 in range(0, nz, _SLAB):
            image[k0:k0 + _SLAB] = image[k0:k0 + _SLAB, :, ::-1].copy()
            truth[k0:k0 + _SLAB] = truth[k0:k0 + _SLAB, :, ::-1].copy()
        position_x = grid.full_n - ox - nx_out
    else:
        position_x = ox
    position_xyz = (int(position_x), int(oy), 0)
    origin = (position_xyz[2] * h, position_xyz[1] * h, position_xyz[0] * h)
    header_hand = spec.hand if spec.hand_in_header else None
    header = {
        "format": "phantom",
        "generator": f"{GENERATOR_NAME} {GENERATOR_VERSION}",
        "position": position_xyz,
        "processing_log": _processing_log(spec, calibration),
        "phantom_spec": {**spec.to_dict(), "hand": header_hand},
    }
    image_scan = Scan(data=image, spacing=(h, h, h), origin=origin, calibration=calibration, unit=UNIT_NATIVE,
                      kind="image", hand=header_hand, header=header)
    truth_scan = Scan(data=truth, spacing=(h, h, h), origin=origin, calibration=None, unit="unknown", kind="mask",
                      hand=header_hand, header=dict(header))
    info = _truth_info(spec, anatomy, grid, image_scan, truth, trab_fraction, mc2_cortex, noise_sd, position_xyz,
                       time.perf_counter() - started, offset_native * per_native)
    if pose is not None:
        info["design"]["pose"] = pose
    if spec.variation == "broad":
        from .phantom_broad import design_info

        info["design"]["broad"] = design_info(anatomy)
    return Phantom(image=image_scan, truth=truth_scan, truth_info=info, spec=spec)



def _d100(image: np.ndarray, inside: np.ndarray, calibration: Calibration) -> float:
    values = image[inside].astype(np.float64) * (calibration.density_slope / calibration.mu_scaling) + calibration.density_intercept
    return float(values.mean())



def _thumb_info(anatomy) -> dict | None:
    from .phantom_hand import thumb_info

    return thumb_info(anatomy)


def _truth_info(spec, anatomy, grid, image: Scan, truth, trab_fraction, cortex_mm3, noise_sd, position_xyz,
                seconds, offset_mg) -> dict:
    calibration = image.calibration
    inside = truth.view(bool)  # 0/1 uint8: a view, not a copy of a possibly 1536 x 1536 x N mask
    values = image.data[inside].astype(np.float64) * (calibration.density_slope / calibration.mu_scaling) + calibration.density_intercept
    n = int(values.size)
    h = spec.spacing_mm
    per_slice = inside.sum(axis=(1, 2))
    n_slices = int((per_slice > 0).sum())
    mc2 = anatomy.bones[0]
    return {
        "generator": GENERATOR_NAME,
        "generator_version": GENERATOR_VERSION,
        "spec": spec.to_dict(),
        **{k: v for k, v in spec.to_dict().items() if k != "d100_target"},
        "d100_target_mg_ha_cm3": anatomy.d100_target,
        "d100_mg_ha_cm3": float(values.mean()),
        "sd_mg_ha_cm3": float(values.std(ddof=1)) if n > 1 else 0.0,
        "n_voxels": n,
        "volume_mm3": n * h**3,
        "n_slices_with_bone": n_slices,
        "mean_slice_area_mm2": n * h * h / max(n_slices, 1),
        "first_slice": int(np.flatnonzero(per_slice)[0]) if n else None,
        "last_slice": int(np.flatnonzero(per_slice)[-1]) if n else None,
        "shape": list(image.shape),
        "spacing_mm": list(image.spacing),
        "origin_mm": list(image.origin),
        "aim_position_xyz": list(position_xyz),
        "calibration": calibration.to_dict(),
        "scanner_name": SCANNER_NAMES[spec.scanner],
        "layout": "z distal (slice 0: phalanx base) to proximal; y dorsal to palmar; "
                  "x radial to ulnar for a right hand, mirrored for a left hand",
        "design": {
            "cortical_density_mg_ha_cm3": mc2.cortical_density,
            "trabecular_tissue_density_mg_ha_cm3": anatomy.tissue_density,
            "trabecular_bone_fraction": trab_fraction,
            "trabecular_density_mg_ha_cm3": anatomy.marrow + trab_fraction * (anatomy.tissue_density - anatomy.marrow),
            "marrow_density_mg_ha_cm3": anatomy.marrow,
            "trabecular_wavelength_mm": anatomy.trabecular_wavelength,
            "cortex_thickness_head_mm": mc2.cortex_head,
            "cortex_thickness_shaft_mm": mc2.cortex_shaft,
            "cortical_volume_mm3": cortex_mm3,
            "head_width_mm": 2 * mc2.a_head,
            "head_depth_mm": 2 * mc2.b_head,
            "shaft_width_mm": 2 * mc2.a_shaft,
            "mc2_tip_z_mm": mc2.z_tip,
            "soft_tissue_mg_ha_cm3": {"fat": FAT, "muscle": MUSCLE, "skin": SKIN, "tendon": TENDON},
            "psf_sigma_mm": anatomy.psf_sigma_mm,
            "noise_sd_mg_ha_cm3": noise_sd,
            "marrow_offset_to_hit_target_mg_ha_cm3": offset_mg,
            "erosions": [{"centre_xyz_mm": [float(v) for v in e.centre], "radii_mm": [float(v) for v in e.radii]}
                         for e in mc2.erosions],
            "thumb": _thumb_info(anatomy),
        },
        "truth_convention": "MC2 periosteal envelope, solid; erosion cavities (open to the outside) excluded",
        "generation_seconds": seconds,
    }
