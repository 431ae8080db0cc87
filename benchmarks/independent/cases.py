"""A case of the independent family: spec -> (image, truth, truth JSON), and writing it to disk."""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_vbmd._atomic import atomic_path
from napari_vbmd.errors import VbmdError
from napari_vbmd.io import write_image, write_mask
from napari_vbmd.scan import UNIT_NATIVE, Scan

from .bones import surface_points
from .hand import draw_hand, joint_space_mm
from .render import Field, Placement, Renderer, rotation_zyx
from .scanner import CALIBRATIONS, STACK_SLICES, SliceNoise, apply_motion, draw_motion, draw_scanner, hu_to_density, to_native

GENERATOR = "napari-vbmd independent validation family (benchmarks/independent)"
GENERATOR_VERSION = 2
#: Older versions whose cases are still valid, by what changed since: version 2 measures motion from
#: the hand's mean position instead of its start, so version-1 cases without motion are the same voxels.
_STILL_VALID = {1: lambda spec: spec.motion_grade == 0}
#: In-plane size of each scanner's reconstructed field of view (mm).
SCANNER_FIELD_MM = {"xtremect1": 1536 * 0.082, "xtremect2": 2304 * 0.061}
#: A whole-hand field larger than this many voxels a side is cropped to the hand (as an operator would).
WHOLE_FIELD_MAX_VOXELS = 1920


@dataclass(frozen=True)
class Pose:
    """How the same hand lies in a repeat scan: in-plane rotation, shift, tilt, fresh noise and motion."""

    rotation_deg: float = 0.0
    shift_mm: tuple[float, float] = (0.0, 0.0)  # (y, x)
    tilt_deg: tuple[float, float] = (0.0, 0.0)  # about y, about x
    z_shift_mm: float = 0.0
    noise_seed: int = 0

    @classmethod
    def draw(cls, seed: int) -> "Pose":
        """Repositioning within what a hand holder allows: +-8 deg, +-2 mm, +-3 deg tilt, +-0.3 mm along z."""
        rng = np.random.default_rng(np.random.SeedSequence([seed, 811]))
        return cls(rotation_deg=float(rng.uniform(-8, 8)), shift_mm=tuple(float(v) for v in rng.uniform(-2, 2, 2)),
                   tilt_deg=tuple(float(v) for v in rng.uniform(-3, 3, 2)), z_shift_mm=float(rng.uniform(-0.3, 0.3)),
                   noise_seed=int(seed))


@dataclass(frozen=True)
class IndependentSpec:
    seed: int
    hand: str = "right"
    field: str = "crop"  # "crop": MC2 and MC3 as in a clinical AIM crop; "whole": MC2-MC5 and the thumb
    voxel_mm: float = 0.082
    scanner: str = "xtremect1"
    n_slices: int = 110
    motion_grade: int = 0
    erosions: int = 0
    hand_in_header: bool = False
    pose: Pose | None = None

    def __post_init__(self):
        if self.hand not in ("left", "right"):
            raise ValueError(f"hand must be left or right, got {self.hand!r}")
        if self.field not in ("crop", "whole"):
            raise ValueError(f"field must be crop or whole, got {self.field!r}")
        if self.scanner not in CALIBRATIONS:
            raise ValueError(f"scanner must be one of {', '.join(CALIBRATIONS)}, got {self.scanner!r}")
        if not 0.03 <= self.voxel_mm <= 0.5:
            raise ValueError(f"voxel size must be 0.03-0.5 mm, got {self.voxel_mm}")
        if not 8 <= self.n_slices <= 400:
            raise ValueError(f"number of slices must be 8-400, got {self.n_slices}")
        if self.motion_grade not in (0, 1, 2, 3) or not 0 <= self.erosions <= 4:
            raise ValueError("motion grade must be 0-3 and erosions 0-4")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> "IndependentSpec":
        data = dict(data)
        if data.get("pose") is not None:
            pose = dict(data["pose"])
            pose["shift_mm"], pose["tilt_deg"] = tuple(pose["shift_mm"]), tuple(pose["tilt_deg"])
            data["pose"] = Pose(**pose)
        return cls(**data)


@dataclass
class IndependentCase:
    image: Scan
    truth: Scan
    info: dict


def _layout(spec: IndependentSpec, hand_rng_seed: int):
    """The unposed placement of the hand in the scanner field and the field of view (right-hand orientation)."""
    rng = np.random.default_rng(np.random.SeedSequence([spec.seed, 70]))
    h = spec.voxel_mm
    pre_mm = float(rng.uniform(0.8, 2.5))
    offset_yx = rng.uniform(-8, 8, 2)
    crop_margins = rng.uniform([4.0, 3.0, 5.0, 7.0], [7.0, 6.0, 8.0, 11.0])  # radial, ulnar, dorsal, palmar (mm)
    z_position = int(rng.integers(0, 40))
    return pre_mm, offset_yx, crop_margins, z_position


def generate(spec: IndependentSpec, progress=None) -> IndependentCase:
    """Render the case of ``spec`` (deterministic: the same spec gives the same voxels)."""
    t0 = time.perf_counter()
    h = spec.voxel_mm
    calibration = CALIBRATIONS[spec.scanner]
    pre_mm, offset_yx, margins, z_position = _layout(spec, spec.seed)
    # slice 0 lies distal of the phalanx's articular surface: past MC2's tip by the joint space and more
    pre_mm += joint_space_mm(spec.seed)
    z_range = (-pre_mm - 6.0, -pre_mm + spec.n_slices * h + 6.0)
    visible_mm = spec.n_slices * h - pre_mm  # how much of MC2 the field shows (erosions are placed there)
    hand = draw_hand(spec.seed, spec.erosions, z_range, whole_hand=spec.field == "whole", visible_mm=visible_mm)
    settings = draw_scanner(np.random.default_rng(np.random.SeedSequence([spec.seed, 80])), spec.scanner, h)

    n_field = int(round(SCANNER_FIELD_MM[spec.scanner] / h))
    o = hand.outline
    extent = [o["y_dorsal"] - 4.0, o["y_palmar"] + 4.0, o["x_radial"] - 4.0, o["x_ulnar"] + 4.0]
    if hand.thumb_axis is not None:
        extent[2] = min(extent[2], float(hand.thumb_axis[0][2]) - hand.thumb_axis[2] - 8.0)
        extent[1] = max(extent[1], float(hand.thumb_axis[0][1]) + hand.thumb_axis[2] + 4.0)
    centre_hand = np.array([0.0, 0.5 * (extent[0] + extent[1]), 0.5 * (extent[2] + extent[3])])
    # unposed: the hand's centre near the middle of the scanner field; MC2's tip pre_mm after slice 0
    pivot_world = np.array([(z_position * h) + pre_mm, 0.0, 0.0])
    pivot_world[1:] = 0.5 * n_field * h + offset_yx - centre_hand[1:]
    base = Placement(np.eye(3), np.zeros(3), pivot_world)
    if spec.field == "crop":
        points = np.concatenate([surface_points(hand.bones[name], np.arange(0.0, 10.0, 0.5)) for name in ("MC2", "MC3")])
        world = base.to_world(points)
        lo = np.array([world[:, 1].min() - margins[2], world[:, 2].min() - margins[0]])
        hi = np.array([world[:, 1].max() + margins[3], world[:, 2].max() + margins[1]])
    else:
        if n_field <= WHOLE_FIELD_MAX_VOXELS:  # the scanner's whole reconstruction
            lo, hi = np.zeros(2), np.full(2, n_field * h)
        else:  # the hand's own box, centred, at most WHOLE_FIELD_MAX_VOXELS a side
            c = base.to_world(np.array([0.0, 0.5 * (extent[0] + extent[1]), 0.5 * (extent[2] + extent[3])]))[1:]
            half = 0.5 * min(WHOLE_FIELD_MAX_VOXELS * h, max(extent[1] - extent[0], extent[3] - extent[2]))
            lo, hi = c - half, c + half
    lo_idx = np.maximum(np.floor(lo / h).astype(int), 0)
    hi_idx = np.minimum(np.ceil(hi / h).astype(int), n_field)
    field = Field((spec.n_slices, int(hi_idx[0] - lo_idx[0]), int(hi_idx[1] - lo_idx[1])), h,
                  (z_position, int(lo_idx[0]), int(lo_idx[1])))

    pose = spec.pose or Pose()
    pivot_hand = np.array([3.0, 0.0, 0.0])  # rotate about a point inside MC2's head
    rotation = rotation_zyx(pose.rotation_deg, pose.tilt_deg[0], pose.tilt_deg[1])
    placement = Placement(rotation, pivot_hand, base.to_world(pivot_hand)
                          + np.array([pose.z_shift_mm, pose.shift_mm[0], pose.shift_mm[1]]))

    renderer = Renderer(hand, field, placement, settings, calibration)
    blurred, (box_y, box_x), truth = renderer.render(progress)
    if not truth.any():
        raise VbmdError(f"independent phantom seed {spec.seed}: MC2 is not in the field of view")

    air = np.float32(hu_to_density(renderer.air_hu, calibration))
    plane = np.full(field.shape[1:], air, dtype=np.float32)
    noise = SliceNoise(int(np.random.SeedSequence([spec.seed, 90, pose.noise_seed]).generate_state(1)[0]),
                       field.shape[1:], settings)
    stack = STACK_SLICES[spec.scanner]
    tracks = [draw_motion(np.random.default_rng(np.random.SeedSequence([spec.seed, 91, pose.noise_seed, k])),
                          spec.motion_grade) for k in range(-(-spec.n_slices // stack))]
    native = np.empty(field.shape, dtype=np.int16)
    pad = int(np.ceil(4.0 / h))
    for k in range(spec.n_slices):
        track = tracks[k // stack]
        active = blurred[k]
        if track is not None:  # the hand moves; the air around it does not change
            active = apply_motion(active - air, track, h, (k % stack) / stack, pad) + air
        plane[box_y, box_x] = active
        native[k] = to_native(plane + noise.slice(k), calibration)
    del blurred

    position = list(field.position)
    if spec.hand == "left":  # the exact mirror image, placed mirrored in the scanner's field
        native = np.ascontiguousarray(native[:, :, ::-1])
        truth = np.ascontiguousarray(truth[:, :, ::-1])
        position[2] = n_field - field.position[2] - field.shape[2]
    origin = tuple(float(p * h) for p in position)
    header_hand = spec.hand if spec.hand_in_header else None
    image = Scan(data=native, spacing=(h, h, h), origin=origin, calibration=calibration, unit=UNIT_NATIVE, kind="image",
                 hand=header_hand, header={"format": "aim", "processing_log": ""})
    mask = Scan(data=truth.astype(np.uint8), spacing=(h, h, h), origin=origin, calibration=calibration, unit="unknown",
                kind="mask", hand=header_hand)
    info = _truth_info(spec, image, truth, hand, settings, field, position, n_field, pre_mm, tracks, time.perf_counter() - t0)
    return IndependentCase(image=image, truth=mask, info=info)


def _truth_info(spec, image, truth, hand, settings, field, position, n_field, pre_mm, tracks, seconds) -> dict:
    density = image.data.astype(np.float64) * image.calibration.density_per_native + image.calibration.density_intercept
    inside = density[truth]
    areas = truth.reshape(truth.shape[0], -1).sum(axis=1) * spec.voxel_mm ** 2
    present = np.flatnonzero(areas)
    return {
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
        "truth_convention": "MC2's periosteal envelope, solid (cortex and marrow), erosion pits excluded; D100 = mean "
                            "density of the written image inside it",
        "d100_mg_ha_cm3": float(inside.mean()),
        "sd_mg_ha_cm3": float(inside.std()),
        "n_voxels": int(truth.sum()),
        "volume_mm3": float(truth.sum() * spec.voxel_mm ** 3),
        "n_slices_with_bone": int(present.size),
        "first_slice": int(present[0]),
        "last_slice": int(present[-1]),
        "mean_slice_area_mm2": float(areas[present].mean()),
        "hand": spec.hand,
        "hand_in_header": spec.hand_in_header,
        "shape": list(image.shape),
        "spacing_mm": list(image.spacing),
        "origin_mm": list(image.origin),
        "aim_position_xyz": [int(position[2]), int(position[1]), int(position[0])],
        "scanner_field_voxels": n_field,
        "calibration": image.calibration.to_dict(),
        "spec": spec.to_dict(),
        "design": {
            "scanner": {**settings.to_dict(), "mtf10_lp_per_mm": settings.mtf10_lp_per_mm()},
            "joint_to_first_slice_mm": pre_mm,
            "motion": [None if t is None else dataclasses.asdict(t) for t in tracks],
            **hand.design,
        },
        "seconds": seconds,
    }


def case_paths(folder, name: str) -> dict:
    folder = Path(folder)
    return {"image": folder / f"{name}.aim", "mask": folder / f"{name}_mask.aim", "truth": folder / f"{name}_truth.json"}


def write_case(case: IndependentCase, folder, name: str, overwrite: bool = False) -> dict:
    """``<name>.aim`` (image), ``<name>_mask.aim`` (truth), ``<name>_truth.json``; nothing is written when any
    exists unless ``overwrite``."""
    paths = case_paths(folder, name)
    Path(folder).mkdir(parents=True, exist_ok=True)
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise VbmdError("already exists; refusing to overwrite", path)
    write_image(paths["image"], case.image)
    write_mask(paths["mask"], case.truth, parent=case.image)
    with atomic_path(paths["truth"]) as tmp:
        Path(tmp).write_text(json.dumps(_jsonable(case.info), indent=1), encoding="utf-8")
    return paths


def is_cached(folder, name: str, spec: IndependentSpec) -> bool:
    paths = case_paths(folder, name)
    if not all(p.exists() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    version = info.get("generator_version")
    if version != GENERATOR_VERSION and not (version in _STILL_VALID and _STILL_VALID[version](spec)):
        return False
    return info.get("spec") == _jsonable(spec.to_dict())


def _jsonable(value):
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, np.integer)):
        return value.item()
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    return value
