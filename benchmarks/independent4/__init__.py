"""Fourth independent phantom family for napari-vbmd: validation only, never train or choose on it.

Bones are soft unions of ellipsoids warped by a B-spline free-form deformation and voxelised with
3 x 3 x 3 sub-voxel samples at their surfaces; trabecular bone is an explicit network of rods and
plates along the head's principal stress directions; the scanner adds beam-hardening cupping and
streaks, noise whose variance follows the attenuation along the rays, a core-plus-tail point spread
(anisotropic in z), rings, and motion as a per-slice rigid displacement plus a second position mixed
into bursts of slices. See docs/independent-phantoms-v4.md.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from napari_vbmd._atomic import atomic_path
from napari_vbmd.io import write_image, write_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.scan import UNIT_NATIVE, Calibration, Scan

from . import acquire
from .anatomy import FFD, draw_hand, erosion_pits
from .network import build_network
from .render import Geometry, Texture, render_bone, rotation, soft_tissue

GENERATOR = "independent4"
GENERATOR_VERSION = 1
CALIBRATIONS = {
    "xtremect1": Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0,
                             mu_water=0.2464),
    "xtremect2": Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0,
                             mu_water=0.2402),
}
FOV_MM = {"xtremect1": 126.0, "xtremect2": 140.0}
EVALUATION_FIRST_SEED = 80_000
PRECISION_FIRST_SEED = 85_000
CHUNK = 12  # slices rendered together

__all__ = ["GENERATOR", "GENERATOR_VERSION", "CALIBRATIONS", "Pose", "IndependentSpec", "Case", "generate",
           "case_paths", "is_cached", "write_case", "evaluation_specs", "precision_specs",
           "EVALUATION_FIRST_SEED", "PRECISION_FIRST_SEED"]


def _rng(*keys) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([4, *[int(k) for k in keys]]))


@dataclass(frozen=True)
class Pose:
    """Repositioning of the same hand for a repeat scan (and a fresh noise realisation)."""
    rotation_deg: float = 0.0
    shift_mm: tuple = (0.0, 0.0)  # (y, x)
    tilt_deg: tuple = (0.0, 0.0)  # of the long axis towards y and towards x
    z_shift_mm: float = 0.0
    noise_seed: int = 0

    @classmethod
    def draw(cls, seed: int) -> "Pose":
        rng = _rng(seed, 7)
        tilt = rng.uniform(0.0, 3.0)
        direction = rng.uniform(0.0, 2 * np.pi)
        return cls(rotation_deg=float(rng.uniform(-8.0, 8.0)),
                   shift_mm=(float(rng.uniform(-2.0, 2.0)), float(rng.uniform(-2.0, 2.0))),
                   tilt_deg=(float(tilt * np.sin(direction)), float(tilt * np.cos(direction))),
                   z_shift_mm=float(rng.uniform(-0.3, 0.3)), noise_seed=int(rng.integers(1, 2 ** 31 - 1)))

    def to_dict(self) -> dict:
        return {"rotation_deg": float(self.rotation_deg), "shift_mm": [float(s) for s in self.shift_mm],
                "tilt_deg": [float(t) for t in self.tilt_deg], "z_shift_mm": float(self.z_shift_mm),
                "noise_seed": int(self.noise_seed)}


@dataclass(frozen=True)
class IndependentSpec:
    seed: int
    hand: str = "right"
    field: str = "crop"
    voxel_mm: float = 0.082
    scanner: str = "xtremect1"
    n_slices: int = 110
    motion_grade: int = 0
    erosions: int = 0
    hand_in_header: bool = False
    pose: Pose | None = None

    def __post_init__(self):
        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.hand not in ("left", "right"):
            raise ValueError(f"hand must be 'left' or 'right', got {self.hand!r}")
        if self.field not in ("crop", "whole"):
            raise ValueError(f"field must be 'crop' or 'whole', got {self.field!r}")
        if self.scanner not in CALIBRATIONS:
            raise ValueError(f"scanner must be one of {', '.join(CALIBRATIONS)}, got {self.scanner!r}")
        if not (isinstance(self.voxel_mm, (int, float)) and 0.03 <= float(self.voxel_mm) <= 0.5):
            raise ValueError(f"voxel_mm must lie in 0.03-0.5, got {self.voxel_mm!r}")
        for name, lo, hi in (("n_slices", 4, 400), ("motion_grade", 0, 3), ("erosions", 0, 4)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= value <= hi:
                raise ValueError(f"{name} must be an integer in {lo}-{hi}, got {value!r}")
        if not isinstance(self.hand_in_header, bool):
            raise ValueError(f"hand_in_header must be True or False, got {self.hand_in_header!r}")
        if self.pose is not None and not isinstance(self.pose, Pose):
            raise ValueError(f"pose must be a Pose or None, got {type(self.pose).__name__}")

    def to_dict(self) -> dict:
        out = {k: getattr(self, k) for k in ("seed", "hand", "field", "voxel_mm", "scanner", "n_slices",
                                             "motion_grade", "erosions", "hand_in_header")}
        out["seed"], out["voxel_mm"] = int(self.seed), float(self.voxel_mm)
        out["n_slices"], out["motion_grade"], out["erosions"] = int(self.n_slices), int(self.motion_grade), int(self.erosions)
        out["pose"] = self.pose.to_dict() if self.pose is not None else None
        return out


@dataclass
class Case:
    image: Scan
    truth: Scan
    info: dict
    soft: object = None


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, (np.bool_, bool)):
        return bool(x)
    if isinstance(x, np.integer):
        return int(x)
    if isinstance(x, (np.floating, float)):
        return round(float(x), 6)
    return x


def _draw_tissue(rng, hand) -> dict:
    """Soft-tissue densities (mg HA/cm3 on the Scanco scale, water ~ 0; 1 HU ~ 0.36 mg HA/cm3)."""
    t = {"fat": rng.uniform(-55.0, -25.0), "muscle": rng.uniform(15.0, 40.0), "tendon": rng.uniform(40.0, 75.0),
         "skin": rng.uniform(20.0, 45.0), "cartilage": rng.uniform(10.0, 35.0), "pannus": rng.uniform(15.0, 45.0),
         "skin_mm": rng.uniform(1.0, 2.0), "subcut_mm": rng.uniform(1.5, 4.0), "muscle_bias": rng.uniform(-0.2, 0.3)}
    lo, hi = hand.ffd.origin, hand.ffd.origin + (np.array(hand.ffd.disp.shape[1:]) - 1) * hand.ffd.step
    g = FFD.draw(rng, lo + 4.0, hi - 4.0, 4.0, 1.0, step=hand.ffd.step)
    raw = g.disp[0] / max(float(g.disp[0].std()), 1e-6)
    t["mix_grid"] = (1.0 / (1.0 + np.exp(-3.0 * (raw + t["muscle_bias"])))).astype(np.float32)
    t["mix_lo"], t["mix_step"] = g.origin, g.step
    return t


def _draw_network_params(rng) -> dict:
    return {"bvtv": rng.uniform(0.12, 0.28),  # MC head BV/TV at micro-CT resolution, about 0.15-0.3
            "rod_radius_mm": rng.uniform(0.05, 0.08),  # Tb.Th 0.10-0.16 mm
            "rod_length_mm": rng.uniform(1.0, 2.0),  # Tb.Sp 0.4-1.0 mm with node-to-node rods 1-2 mm
            "plate_fraction": rng.uniform(0.3, 0.6),
            "plate_radius_mm": rng.uniform(0.35, 0.7),
            "plate_thickness_mm": rng.uniform(0.08, 0.14),
            "cross_fraction": rng.uniform(0.2, 0.4),
            "rod_spread_deg": rng.uniform(12.0, 30.0)}


def _draw_scanner(rng, spec) -> dict:
    v = float(spec.voxel_mm)
    xt1 = spec.scanner == "xtremect1"
    p = {
        # MTF 10 % at about 4 lp/mm (XtremeCT) / 5.5 lp/mm (XtremeCT II): Gaussian core sigma = 0.34 / f10
        "psf_sigma_xy_mm": rng.uniform(0.075, 0.10) if xt1 else rng.uniform(0.055, 0.075),
        "psf_tail_weight": rng.uniform(0.06, 0.18),  # scatter and detector glare
        "psf_tail_sigma_mm": rng.uniform(0.25, 0.45),
        "noise_corr_xy_vox": rng.uniform(0.9, 1.2),  # lag-1 correlation 0.73-0.84 (0.78 in aluminum.aim)
        "noise_corr_z_vox": rng.uniform(0.6, 0.8),  # lag-1 correlation 0.50-0.68 (0.58 in aluminum.aim)
        "noise_lowcut": rng.uniform(0.1, 0.3),
        "bh_amplitude": rng.uniform(20.0, 60.0) if xt1 else rng.uniform(15.0, 45.0),
        "rings": bool(rng.random() < 0.5),
    }
    p["psf_sigma_z_mm"] = p["psf_sigma_xy_mm"] * rng.uniform(0.9, 1.3)  # cone-beam z resolution a little worse
    # noise SD in fat: XtremeCT 82 um 30-75; XtremeCT II 61 um 60-130; XtremeCT II at 82 um ~ x (61/82)^1.5
    if xt1:
        lo, hi = 30.0, 75.0
    else:
        scale = (0.061 / v) ** 1.5
        lo, hi = 60.0 * scale, 130.0 * scale
    p["noise_sd_fat"] = rng.uniform(lo, hi)
    n_rings = int(rng.integers(1, 5))
    p["ring_radii_mm"] = list(rng.uniform(3.0, 50.0, n_rings))
    p["ring_amplitudes"] = list(rng.choice([-1, 1], n_rings) * rng.uniform(5.0, 20.0, n_rings))
    return p


def _layout(rng, hand, spec) -> dict:
    mc2 = hand.bones[0]
    mc3 = next(b for b in hand.bones if b.name == "MC3")
    if spec.field == "crop":
        b2, b3 = mc2.blobs.bbox(), mc3.blobs.bbox()
        y_lo = b2[0, 1] - rng.uniform(4.0, 8.0)
        y_hi = b2[1, 1] + rng.uniform(8.0, 14.0)
        x_lo = b2[0, 2] - rng.uniform(3.0, 8.0)
        x_hi = b3[1, 2] + rng.uniform(2.0, 5.0)
    else:
        m = rng.uniform(1.0, 3.0, 4)
        (y_lo, x_lo), (y_hi, x_hi) = hand.extent
        y_lo, y_hi, x_lo, x_hi = y_lo - m[0], y_hi + m[1], x_lo - m[2], x_hi + m[3]
    return {"y_lo": y_lo, "x_lo": x_lo, "y_hi": y_hi, "x_hi": x_hi}


def generate(spec: IndependentSpec) -> Case:
    """One case: the image (int16 native), MC2's truth and what was drawn."""
    if not isinstance(spec, IndependentSpec):
        raise TypeError("generate() takes an IndependentSpec")
    v, n = float(spec.voxel_mm), int(spec.n_slices)
    cal = CALIBRATIONS[spec.scanner]
    air = float(cal.density_intercept)  # mu = 0
    pose = spec.pose or Pose()
    z_len = max(12.0, n * v + 1.0)
    rng_anat = _rng(spec.seed, 1)
    hand = draw_hand(rng_anat, z_len)
    tissue = _draw_tissue(rng_anat, hand)
    net_p = _draw_network_params(_rng(spec.seed, 8))
    layout = _layout(rng_anat, hand, spec)
    scan_p = _draw_scanner(_rng(spec.seed, 2), spec)
    mc2 = hand.bones[0]
    mc2.pits = erosion_pits(_rng(spec.seed, 4), mc2, int(spec.erosions))
    rng_acq = _rng(spec.seed, 3, pose.noise_seed)
    motion = acquire.draw_motion(rng_acq, int(spec.motion_grade), n, v)

    # trabecular networks: MC2's own, and one periodic tile shared by the other bones
    bb = mc2.blobs.bbox(pad=0.3)
    lo = np.array([max(bb[0, 0], mc2.tip_z - 0.5), bb[0, 1], bb[0, 2]])
    hi = np.array([min(bb[1, 0], z_len + 1.5), bb[1, 1], bb[1, 2]])
    inside = lambda pts: mc2.blobs.rho(pts[:, 0], pts[:, 1], pts[:, 2]) <= 0.97  # noqa: E731
    focus = np.array([mc2.tip_z + 12.0, 0.5, 0.0])
    occ, net_info = build_network(_rng(spec.seed, 5), lo, hi, inside, focus, net_p["bvtv"], net_p,
                                  head_z=mc2.tip_z + 5.0)
    tile_lo = np.zeros(3)
    tile_occ, _ = build_network(_rng(spec.seed, 6), tile_lo, np.array([8.0, 9.0, 9.0]), lambda pts: np.ones(len(pts), bool),
                                None, 0.8 * net_p["bvtv"], net_p)
    textures = {"mc2": Texture(occ, lo, v), "tile": Texture(tile_occ, tile_lo, v, wrap=True)}
    del occ, tile_occ

    ny = int(np.ceil((layout["y_hi"] - layout["y_lo"]) / v)) + 1
    nx = int(np.ceil((layout["x_hi"] - layout["x_lo"]) / v)) + 1
    shape = (n, ny, nx)
    z_mid = (n - 1) * v / 2
    centre = (z_mid, -layout["y_lo"], -layout["x_lo"])  # MC2's axis in the field (mm)
    rot = rotation(pose.rotation_deg, *pose.tilt_deg)
    shift = (pose.z_shift_mm, *pose.shift_mm)
    geo = Geometry(n, v, shape, centre, rot, shift, motion["shift_mm"], motion["rot_deg"], z_mid)

    ideal = np.empty(shape, np.float32)
    truth = np.zeros(shape, bool)
    order = ([b for b in hand.bones if b.cut_by] + [b for b in hand.bones if b.name.startswith("MC")]
             + [b for b in hand.bones if b.name == "thumb"])
    pad = 1.0 + 3.0 * hand.params["ffd_amplitude_mm"]
    for k0 in range(0, n, CHUNK):
        k1 = min(n, k0 + CHUNK)
        h0, h1 = max(0, k0 - 1), min(n, k1 + 1)  # a slice of halo each side for the gradients
        val = soft_tissue(hand, geo, h0, h1, tissue, air)
        t_chunk = np.zeros((h1 - h0, ny, nx), bool)
        for bone in order:
            box = geo.field_box(h0, h1, *bone.blobs.bbox(), pad)
            if box is None:
                continue
            render_bone(bone, hand, geo, h0, h1, box, val, textures, tissue["cartilage"], tissue["pannus"],
                        truth=t_chunk if bone.name == "MC2" else None)
        ideal[k0:k1] = val[k0 - h0:k0 - h0 + (k1 - k0)]
        truth[k0:k1] = t_chunk[k0 - h0:k0 - h0 + (k1 - k0)]
    del textures

    acquire.mix_ghosts(ideal, motion, v)
    maps = acquire.attenuation_maps(ideal, v, air)
    fat_ref = _fat_reference(maps, ideal, tissue["fat"], v)
    inside_hand = maps["dens"] > air + 150.0
    bh_norm = -float(np.percentile(maps["bh"][inside_hand], 0.5)) if inside_hand.any() else 1.0
    bh_scale = scan_p["bh_amplitude"] / max(bh_norm, 1e-9)
    image = acquire.psf(ideal, v, scan_p)
    del ideal
    fov = int(round(FOV_MM[spec.scanner] / v))
    pos_y = int(rng_acq.integers(0, max(1, fov - ny + 1)))
    pos_x = int(rng_acq.integers(0, max(1, fov - nx + 1)))
    ring = acquire.rings((ny, nx), ((fov - 1) / 2 - pos_y, (fov - 1) / 2 - pos_x), v, None, scan_p)
    noise_keys = [4, spec.seed, 3, pose.noise_seed]
    native = np.empty(shape, np.int16)
    fat_stats = np.zeros(3)  # n, sum, sum of squares of the final density where the blurred image is fat
    for k0 in range(0, n, 16):
        k1 = min(n, k0 + 16)
        noise = acquire.correlated_noise(noise_keys, k0, k1, ny, nx, scan_p)
        for k in range(k0, k1):
            var = acquire.map_slice(maps, "var", k, (ny, nx))
            sl = image[k]
            in_fat = np.abs(sl - tissue["fat"]) < 2.0  # fat, away from other tissue by more than the blur
            sl += bh_scale * acquire.map_slice(maps, "bh", k, (ny, nx))
            sl += scan_p["noise_sd_fat"] * np.sqrt(np.maximum(var, 1e-12) / fat_ref) * noise[k - k0]
            if ring is not None:
                sl += ring
            vals = sl[in_fat].astype(np.float64)
            fat_stats += (vals.size, vals.sum(), (vals ** 2).sum())
            q = np.round((sl.astype(np.float64) - cal.density_intercept) / cal.density_slope * cal.mu_scaling)
            native[k] = np.clip(q, -32768, 32767).astype(np.int16)
    del image, noise
    mask = truth.astype(np.uint8)
    if spec.hand == "left":  # the exact mirror image, and the field's place in the scanner mirrored
        native = np.ascontiguousarray(native[:, :, ::-1])
        mask = np.ascontiguousarray(mask[:, :, ::-1])
        pos_x = fov - pos_x - nx
    origin = (0.0, pos_y * v, pos_x * v)
    header = {"format": "phantom", "generator": GENERATOR}
    img = Scan(native, spacing=(v, v, v), origin=origin, calibration=cal, unit=UNIT_NATIVE, kind="image",
               hand=spec.hand if spec.hand_in_header else None, header=dict(header))
    tru = Scan(mask, spacing=(v, v, v), origin=origin, kind="mask", hand=img.hand, header=dict(header))
    if not mask.any():
        raise RuntimeError(f"seed {spec.seed}: MC2 is outside the field")
    result = measure_vbmd(img, tru)
    fat_sd = (float(np.sqrt(max(fat_stats[2] / fat_stats[0] - (fat_stats[1] / fat_stats[0]) ** 2, 0.0)))
              if fat_stats[0] > 100 else None)
    params = dict(hand.params)
    params.update({f"tissue_{k}": val for k, val in tissue.items() if not k.startswith("mix")})
    params.update({f"network_{k}": val for k, val in net_p.items()})
    params.update(net_info)
    params.update(scan_p)
    params.update({"motion_amplitude_mm": motion["amplitude_mm"], "motion_rotation_deg": motion["rotation_deg"],
                   "motion_ghost_weight_max": float(motion["ghost_weight"].max()),
                   "bh_scale": bh_scale, "field_mm": [ny * v, nx * v],
                   "erosion_pits": [{"centre_mm": c, "semi_mm": s} for c, s in mc2.pits],
                   "field_position_vox": [pos_y, pos_x], "fov_vox": fov})
    params.update({f"layout_{k}": val for k, val in layout.items()})
    info = {"generator": GENERATOR, "generator_version": GENERATOR_VERSION, "spec": spec.to_dict(),
            "d100_mg_ha_cm3": float(result.d100_mg_ha_cm3), "mean_slice_area_mm2": float(result.mean_slice_area_mm2),
            "truth_voxels": int(mask.sum()), "noise_sd_in_fat_measured": fat_sd, "fat_voxels": int(fat_stats[0]), "shape": list(shape), "origin": list(origin), "params": params}
    info = _jsonable(info)
    return Case(img, tru, info)


def _fat_reference(maps, ideal, fat, v) -> float:
    """The noise variance map's median over fat (so the drawn SD is the SD in fat)."""
    dens = maps["dens"]
    fat_px = np.abs(dens - fat) < 6.0
    if fat_px.sum() < 10:
        fat_px = np.abs(dens - fat) < 40.0
    if fat_px.sum() < 10:
        return float(np.median(maps["var"]))
    return float(np.median(maps["var"][fat_px]))


def case_paths(out_dir, name: str) -> dict:
    out = Path(out_dir)
    return {"image": out / f"{name}.aim", "mask": out / f"{name}_mask.aim", "truth": out / f"{name}_truth.json"}


def is_cached(out_dir, name: str, spec: IndependentSpec) -> bool:
    paths = case_paths(out_dir, name)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (info.get("generator") == GENERATOR and info.get("generator_version") == GENERATOR_VERSION
            and info.get("spec") == _jsonable(spec.to_dict()))  # as written: floats to 6 decimals (a pose's)


def write_case(case: Case, out_dir, name: str, overwrite: bool = False) -> dict:
    """Image, mask (with the image's log) and, last, the truth JSON (atomically)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = case_paths(out, name)
    if not overwrite:
        existing = [str(p) for p in paths.values() if p.exists()]
        if existing:
            raise FileExistsError(f"refusing to overwrite {', '.join(existing)} (pass overwrite=True)")
    write_image(paths["image"], case.image)
    write_mask(paths["mask"], case.truth, parent=case.image)
    with atomic_path(paths["truth"]) as tmp:
        Path(tmp).write_text(json.dumps(case.info, indent=1), encoding="utf-8")
    return paths


_GRIDS = ((0.082, "xtremect1", 110), (0.061, "xtremect2", 168), (0.082, "xtremect2", 110))


def evaluation_specs(n: int = 48, first_seed: int = EVALUATION_FIRST_SEED) -> list:
    """Each (motion 0-3, erosions 0-3) pair three times in 48 cases; one in three a whole-hand field;
    both hands; the three grids balanced in a fixed shuffled order."""
    grid_order = np.random.default_rng(20261201).permutation(np.arange(max(n, 48)) % 3)
    specs = []
    for i in range(n):
        pair, r = i % 16, i // 16
        motion, erosions = pair // 4, pair % 4
        voxel, scanner, slices = _GRIDS[int(grid_order[i])]
        specs.append(IndependentSpec(
            seed=first_seed + i, hand="left" if (i + r) % 2 else "right",
            field="whole" if r % 3 == pair % 3 else "crop", voxel_mm=voxel, scanner=scanner, n_slices=slices,
            motion_grade=motion, erosions=erosions, hand_in_header=(i % 3 == 1)))
    return specs


def precision_specs(n_anatomies: int = 20, repeats: int = 3, first_seed: int = PRECISION_FIRST_SEED) -> list:
    """Per anatomy, ``repeats`` crops of the same hand, each repositioned (Pose.draw(seed * 10 + r))
    with motion grade (a + r) % 3; both hands, both voxel sizes, erosions on some."""
    groups = []
    for a in range(n_anatomies):
        seed = first_seed + a
        voxel, scanner, slices = _GRIDS[0] if a % 4 in (0, 1) else _GRIDS[1]
        groups.append([IndependentSpec(
            seed=seed, hand="right" if a % 2 == 0 else "left", field="crop", voxel_mm=voxel, scanner=scanner,
            n_slices=slices, motion_grade=(a + r) % 3, erosions=(0, 0, 0, 1, 2)[a % 5],
            pose=Pose.draw(seed * 10 + r)) for r in range(repeats)])
    return groups
