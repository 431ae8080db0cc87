"""Fifth independent phantom family for napari-vbmd: validation only, never for training or choosing.

Written without reading the training generator or the other independent families (see
docs/independent-phantoms-v5.md). Anatomy: lofted quadrant-superellipse bones (``anatomy``, ``hand``);
voxelisation by exact point classification with Halton sub-sampling (``render``); acquisition with a
z-varying rigid motion trajectory, single-view streaks, a shift-variant PSF and spectrum-synthesised
noise scaled by line integrals (``acquisition``).

    from independent5 import IndependentSpec, generate, write_case
    case = generate(IndependentSpec(seed=5001, field="crop", erosions=1))
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from napari_vbmd._atomic import atomic_path
from napari_vbmd.io import write_image, write_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.scan import UNIT_NATIVE, Calibration, Scan

from . import acquisition as aq
from . import anatomy as an
from . import hand as hd
from . import render as rd

GENERATOR = "independent5"
GENERATOR_VERSION = 1
EVALUATION_FIRST_SEED = 60_000
PRECISION_FIRST_SEED = 65_000

GRIDS = ((0.082, "xtremect1", 110), (0.061, "xtremect2", 168), (0.082, "xtremect2", 110))


def _round(value):
    if isinstance(value, float):
        return round(value, 6)
    if isinstance(value, (list, tuple)):
        return [_round(v) for v in value]
    if isinstance(value, dict):
        return {k: _round(v) for k, v in value.items()}
    return value


@dataclass(frozen=True)
class Pose:
    """A repositioning of the same hand: in-plane rotation about MC2's head, shift (y, x), tilt (about x,
    about y), shift along z, and the seed of the fresh noise and field placement of this scan."""

    rotation_deg: float = 0.0
    shift_mm: tuple = (0.0, 0.0)  # (y, x)
    tilt_deg: tuple = (0.0, 0.0)
    z_shift_mm: float = 0.0
    noise_seed: int = 0

    @classmethod
    def draw(cls, seed: int) -> "Pose":
        rng = np.random.default_rng([int(seed), 5013])
        tilt = rng.uniform(-1.0, 1.0, size=2)
        tilt = tilt / max(1.0, float(np.hypot(*tilt))) * 3.0 * rng.uniform(0.0, 1.0)  # |tilt| <= 3 degrees
        return cls(rotation_deg=float(rng.uniform(-8.0, 8.0)),
                   shift_mm=(float(rng.uniform(-2.0, 2.0)), float(rng.uniform(-2.0, 2.0))),
                   tilt_deg=(float(tilt[0]), float(tilt[1])), z_shift_mm=float(rng.uniform(-0.3, 0.3)),
                   noise_seed=int(rng.integers(0, 2**31 - 1)))

    def to_dict(self) -> dict:
        return _round({"rotation_deg": float(self.rotation_deg), "shift_mm": [float(v) for v in self.shift_mm],
                       "tilt_deg": [float(v) for v in self.tilt_deg], "z_shift_mm": float(self.z_shift_mm),
                       "noise_seed": int(self.noise_seed)})


@dataclass(frozen=True)
class IndependentSpec:
    seed: int
    hand: str = "right"
    field: str = "crop"  # or "whole"
    voxel_mm: float = 0.082
    scanner: str = "xtremect1"  # or "xtremect2"
    n_slices: int = 110
    motion_grade: int = 0
    erosions: int = 0
    hand_in_header: bool = False
    pose: Pose | None = None

    def __post_init__(self):
        def is_int(v):
            return isinstance(v, (int, np.integer)) and not isinstance(v, bool)

        if not is_int(self.seed) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.hand not in ("left", "right"):
            raise ValueError(f"hand must be 'left' or 'right', got {self.hand!r}")
        if self.field not in ("crop", "whole"):
            raise ValueError(f"field must be 'crop' or 'whole', got {self.field!r}")
        if self.scanner not in ("xtremect1", "xtremect2"):
            raise ValueError(f"scanner must be 'xtremect1' or 'xtremect2', got {self.scanner!r}")
        if isinstance(self.voxel_mm, bool) or not isinstance(self.voxel_mm, (int, float, np.floating)) \
                or not 0.03 <= float(self.voxel_mm) <= 0.5:
            raise ValueError(f"voxel_mm must be in [0.03, 0.5], got {self.voxel_mm!r}")
        if not is_int(self.n_slices) or not 4 <= self.n_slices <= 400:
            raise ValueError(f"n_slices must be an integer in [4, 400], got {self.n_slices!r}")
        if not is_int(self.motion_grade) or not 0 <= self.motion_grade <= 3:
            raise ValueError(f"motion_grade must be 0-3, got {self.motion_grade!r}")
        if not is_int(self.erosions) or not 0 <= self.erosions <= 4:
            raise ValueError(f"erosions must be an integer in 0-4, got {self.erosions!r}")
        if not isinstance(self.hand_in_header, bool):
            raise ValueError(f"hand_in_header must be a bool, got {self.hand_in_header!r}")
        if self.pose is not None and not isinstance(self.pose, Pose):
            raise ValueError(f"pose must be a Pose or None, got {type(self.pose).__name__}")

    def to_dict(self) -> dict:
        return _round({"seed": int(self.seed), "hand": self.hand, "field": self.field,
                       "voxel_mm": float(self.voxel_mm), "scanner": self.scanner, "n_slices": int(self.n_slices),
                       "motion_grade": int(self.motion_grade), "erosions": int(self.erosions),
                       "hand_in_header": self.hand_in_header,
                       "pose": None if self.pose is None else self.pose.to_dict()})


@dataclass
class Case:
    image: Scan
    truth: Scan
    info: dict


def _field_box(hand, spec) -> tuple[float, float, float, float]:
    """(x0, y0, width, height) of the field in the placement frame (the hand turned by its base rotation)."""
    b2 = hand["bones"][0]
    if spec.field == "crop":
        c = hand["crop"]
        y_mid = 0.5 * (b2["b_p"] - b2["b_d"]) + c["y_offset_mm"]
        return -c["radial_margin_mm"], y_mid - 0.5 * c["height_mm"], c["width_mm"], c["height_mm"]
    length = spec.n_slices * spec.voxel_mm
    x0, x1, y0, y1 = hd.soft_extent(hand, np.linspace(-1.0, length + 1.0, 12))
    psi = np.deg2rad(hand["base_rotation_deg"])
    corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])
    xs = np.cos(psi) * corners[:, 0] - np.sin(psi) * corners[:, 1]
    ys = np.sin(psi) * corners[:, 0] + np.cos(psi) * corners[:, 1]
    m = hand["whole_margin_mm"]
    return xs.min() - m, ys.min() - m, xs.max() - xs.min() + 2 * m, ys.max() - ys.min() + 2 * m


def _place(rng, nx, ny, n_fov):
    """A whole-voxel position of the field inside the scanner's circular field of view."""
    c = (n_fov - 1) / 2.0
    for _ in range(200):
        ix0 = int(rng.integers(0, max(n_fov - nx, 0) + 1))
        iy0 = int(rng.integers(0, max(n_fov - ny, 0) + 1))
        xs, ys = np.array([ix0, ix0 + nx - 1]), np.array([iy0, iy0 + ny - 1])
        if np.hypot(np.abs(xs - c).max(), np.abs(ys - c).max()) <= 0.97 * n_fov / 2:
            return ix0, iy0
    return int((n_fov - nx) // 2), int((n_fov - ny) // 2)


def generate(spec: IndependentSpec) -> Case:
    """The scan and truth of one spec (deterministic in the spec)."""
    hand = hd.draw_hand(spec.seed)
    pits = an.draw_pits(spec.seed, hand["bones"][0])[: spec.erosions]
    pose = spec.pose if spec.pose is not None else Pose()
    rng = np.random.default_rng([spec.pose.noise_seed, 5011] if spec.pose is not None else [spec.seed, 5009])
    cal = aq.CALIBRATIONS[spec.scanner]
    v = float(spec.voxel_mm)
    fx0, fy0, fw, fh = _field_box(hand, spec)
    nx, ny, nz = int(round(fw / v)), int(round(fh / v)), int(spec.n_slices)
    n_fov = int(round(cal["fov_mm"] / v))
    ix0, iy0 = _place(rng, nx, ny, n_fov)
    b2 = hand["bones"][0]
    pivot = (0.0, 0.0, b2["z_apex"] + b2["dome_depth"])
    geom = rd.Geometry((nz, ny, nx), v, fx0, fy0, hand["base_rotation_deg"], pose, pivot)
    acq = aq.draw_acquisition(rng, spec)
    air = cal["density_intercept"]
    bones = rd.bone_list(hand, pits)
    rho, truth, fat_masks = rd.render(hand, pits, geom, air, bones)
    # the photon-variance map: a coarse density map of the whole hand across the FOV at the middle slice
    coarse = 0.5
    nc = int(np.ceil(n_fov * v / coarse))
    cy, cx = np.meshgrid(np.arange(nc) * coarse - iy0 * v, np.arange(nc) * coarse - ix0 * v, indexing="ij")
    hx, hy, hz = geom.to_hand(cx.astype(np.float32), cy.astype(np.float32), np.float32(0.5 * nz * v))
    dens, frac = hd.soft_tissue(hand, hx, hy, hz, coarse)
    cmap = frac * dens + (1 - frac) * np.float32(air)
    for _, label_fn, *_rest in bones:
        lab = label_fn(hx, hy, hz)[0]
        cmap = np.where(lab == an.CORTEX, np.float32(950.0), np.where(lab == an.INNER, np.float32(250.0), cmap))
    vmap = aq.variance_map(cmap, coarse, air, cal["density_slope"])
    native, fat_sd = aq.acquire(rho, acq, spec, (iy0, ix0, n_fov), cal, rng, fat_masks, (vmap, coarse))
    del rho
    if spec.hand == "left":  # a left hand is the right hand's mirror image, placed mirrored in the FOV
        native = np.ascontiguousarray(native[:, :, ::-1])
        truth = np.ascontiguousarray(truth[:, :, ::-1])
        ix0 = n_fov - 1 - (ix0 + nx - 1)
    calibration = Calibration(cal["density_slope"], cal["density_intercept"], cal["mu_scaling"], cal["mu_water"])
    origin = (0.0, iy0 * v, ix0 * v)
    image = Scan(native, (v, v, v), origin, calibration=calibration, unit=UNIT_NATIVE, kind="image",
                 hand=spec.hand if spec.hand_in_header else None)
    truth_scan = Scan(truth, (v, v, v), origin, kind="mask", unit="unknown")
    result = measure_vbmd(image, truth_scan)
    areas = truth.reshape(nz, -1).sum(axis=1)
    present = areas[areas > 0]
    params = {
        "mc2_width_mm": hand["mc2_width_mm"], "mc2_depth_mm": hand["mc2_depth_mm"],
        "mc2_head_cortex_mm": hand["mc2_head_cortex_mm"], "mc2_shaft_cortex_mm": hand["mc2_shaft_cortex_mm"],
        "mc2_joint_gap_mm": hand["mc2_joint_gap_mm"], "field_mm": [fh, fw], "field_shape": [nz, ny, nx],
        "fov_offset_vox": [iy0, ix0], "hand": hand, "pits": pits, "acquisition": acq,
    }
    info = {
        "d100_mg_ha_cm3": float(result.d100_mg_ha_cm3),
        "mean_slice_area_mm2": float(present.mean() * v * v) if present.size else 0.0,
        "truth_voxels": int(truth.sum()),
        "noise_sd_fat_mg_ha_cm3": fat_sd,
        "params": json.loads(json.dumps(params, default=_json_default)),
        "spec": spec.to_dict(),
        "generator": GENERATOR,
        "generator_version": GENERATOR_VERSION,
    }
    return Case(image=image, truth=truth_scan, info=info)


def _json_default(o):
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(type(o).__name__)


def case_paths(out_dir, name) -> dict:
    out = Path(out_dir)
    return {"image": out / f"{name}.aim", "mask": out / f"{name}_mask.aim", "truth": out / f"{name}_truth.json"}


def is_cached(out_dir, name, spec: IndependentSpec) -> bool:
    paths = case_paths(out_dir, name)
    if not all(p.exists() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text())
    except (OSError, ValueError):
        return False
    return (info.get("generator") == GENERATOR and info.get("generator_version") == GENERATOR_VERSION
            and info.get("spec") == json.loads(json.dumps(spec.to_dict())))


def write_case(case: Case, out_dir, name, overwrite: bool = False) -> dict:
    paths = case_paths(out_dir, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite {', '.join(existing)}")
    write_image(paths["image"], case.image)
    write_mask(paths["mask"], case.truth, parent=case.image)
    with atomic_path(paths["truth"]) as tmp:
        Path(tmp).write_text(json.dumps(case.info, indent=1, default=_json_default))
    return paths


def evaluation_specs(n: int = 48, first_seed: int = EVALUATION_FIRST_SEED) -> list[IndependentSpec]:
    """Each (motion 0-3, erosions 0-3) pair three times per 48; 16 whole fields, 32 crops; 24 left, 24 right;
    16 of each grid; the hand in the header of 16; in a fixed shuffled order."""
    specs = []
    block = 0
    while len(specs) < n:
        rng = np.random.default_rng([5_2026, block])
        pairs = [(m, e) for m in range(4) for e in range(4)] * 3
        fields = ["whole"] * 16 + ["crop"] * 32
        hands = ["left", "right"] * 24
        grids = [0, 1, 2] * 16
        header = [True] * 16 + [False] * 32
        for lst in (fields, hands, grids, header):
            rng.shuffle(lst)
        order = rng.permutation(48)
        for i in order:
            if len(specs) >= n:
                break
            voxel, scanner, n_slices = GRIDS[grids[i]]
            specs.append(IndependentSpec(
                seed=first_seed + len(specs), hand=hands[i], field=fields[i], voxel_mm=voxel, scanner=scanner,
                n_slices=n_slices, motion_grade=pairs[i][0], erosions=pairs[i][1], hand_in_header=header[i]))
        block += 1
    return specs


def precision_specs(n_anatomies: int = 20, repeats: int = 3,
                    first_seed: int = PRECISION_FIRST_SEED) -> list[list[IndependentSpec]]:
    """Groups of ``repeats`` crops of one anatomy, each repositioned (Pose.draw(seed * 10 + r)) with fresh
    noise and motion grade (a + r) % 3; hands alternate; half 0.082 mm XtremeCT, half 0.061 mm XtremeCT II;
    erosions on 8 of 20."""
    groups = []
    for a in range(n_anatomies):
        seed = first_seed + a
        voxel, scanner, n_slices = GRIDS[0] if a % 4 in (0, 1) else GRIDS[1]
        erosions = (a % 3) + 1 if a % 5 in (1, 3) else 0
        groups.append([IndependentSpec(
            seed=seed, hand="left" if a % 2 else "right", field="crop", voxel_mm=voxel, scanner=scanner,
            n_slices=n_slices, motion_grade=(a + r) % 3, erosions=erosions, hand_in_header=a % 3 == 0,
            pose=Pose.draw(seed * 10 + r)) for r in range(repeats)])
    return groups
