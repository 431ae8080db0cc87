"""A third independent phantom family (version 3), for validation only.

Never train, fine-tune, calibrate or choose anything on it; evaluate each shipped model on it once.
Written without reading ``napari_vbmd.phantom*`` or ``benchmarks/independent``; it imports neither.
See docs/independent-phantoms-v3.md.

    import sys; sys.path.insert(0, "benchmarks")
    from independent3 import IndependentSpec, generate, write_case
"""
from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_vbmd._atomic import atomic_path
from napari_vbmd.io import write_image, write_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.scan import UNIT_NATIVE, Calibration, Scan

from .acquire import acquire, draw_motion
from .anatomy import draw_hand
from .render import Block, Lattice, draw_pits, envelope, render

GENERATOR = "independent3"
GENERATOR_VERSION = 1

#: Calibrations as the scanners' own AIM logs state them (../shared/data/scanco/README.md)
CALIBRATIONS = {
    "xtremect1": Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0, mu_water=0.2464),
    "xtremect2": Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0, mu_water=0.2402),
}
#: the scanner's field width (mm): positions of the written block are whole voxels in it
FIELD_MM = {"xtremect1": 126.0, "xtremect2": 140.0}
MAX_VIEWS = 600


@dataclass(frozen=True)
class Pose:
    """Where a repeat scan puts the same hand: in-plane rotation about MC2's axis, in-plane shift
    (y, x), tilt of the hand's long axis (about x, about y), shift along z, and the noise seed."""

    rotation_deg: float = 0.0
    shift_mm: tuple = (0.0, 0.0)
    tilt_deg: tuple = (0.0, 0.0)
    z_shift_mm: float = 0.0
    noise_seed: int = 0

    @classmethod
    def draw(cls, seed: int) -> "Pose":
        rng = np.random.default_rng([seed, 3, 11])
        tilt = rng.uniform(0, 3.0)
        phi = rng.uniform(0, 2 * np.pi)
        return cls(rotation_deg=float(rng.uniform(-8, 8)),
                   shift_mm=(float(rng.uniform(-2, 2)), float(rng.uniform(-2, 2))),
                   tilt_deg=(float(tilt * np.cos(phi)), float(tilt * np.sin(phi))),
                   z_shift_mm=float(rng.uniform(-0.3, 0.3)), noise_seed=int(seed))


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
        if self.hand not in ("left", "right"):
            raise ValueError(f"hand must be left or right, not {self.hand!r}")
        if self.field not in ("crop", "whole"):
            raise ValueError(f"field must be crop or whole, not {self.field!r}")
        if self.scanner not in CALIBRATIONS:
            raise ValueError(f"scanner must be one of {sorted(CALIBRATIONS)}")
        if not 0.03 <= self.voxel_mm <= 0.5:
            raise ValueError("voxel_mm must be 0.03-0.5")
        if not 4 <= self.n_slices <= 400:
            raise ValueError("n_slices must be 4-400")
        if not 0 <= self.motion_grade <= 3:
            raise ValueError("motion_grade must be 0-3")
        if not 0 <= self.erosions <= 4:
            raise ValueError("erosions must be 0-4")

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        if self.pose is not None:
            d["pose"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(self.pose).items()}
        return d


@dataclass
class Case:
    image: Scan
    truth: Scan
    info: dict
    #: fat at least 1 mm from any other tissue, on the written grid: where the noise is measured
    soft: np.ndarray | None = None


def _scanner_settings(rng, spec: IndependentSpec) -> dict:
    """Detector blur, FBP window and the reconstructed noise level, by scanner and voxel size."""
    v = spec.voxel_mm
    if spec.scanner == "xtremect1":
        base = dict(window="hann", cutoff=rng.uniform(0.85, 1.0), det_sigma_mm=0.045 * rng.uniform(0.85, 1.15),
                    noise_sd=rng.uniform(30, 75))
    elif v < 0.07:
        base = dict(window="hann", cutoff=rng.uniform(0.9, 1.0), det_sigma_mm=0.027 * rng.uniform(0.85, 1.15),
                    noise_sd=rng.uniform(60, 130))
    else:
        base = dict(window="shepp-logan", cutoff=rng.uniform(0.9, 1.0), det_sigma_mm=0.027 * rng.uniform(0.85, 1.15),
                    noise_sd=rng.uniform(35, 85))
    base["noise_sd"] *= float(np.clip((0.082 / v) ** 1.5 if spec.scanner == "xtremect1" else 1.0, 0.05, 4.0))
    return base


def _extent(hand, zs, field: str, rng) -> tuple[float, float, float, float, dict]:
    """The field's rectangle (x0, x1, y0, y1) in the hand frame, and the hand's own width/height."""
    zs_s = zs[:: max(1, len(zs) // 6)]
    xs, ys = np.meshgrid(np.arange(-60, 110, 0.5), np.arange(-40, 50, 0.5))
    box = [np.inf, -np.inf, np.inf, -np.inf]
    for z in zs_s:
        f, _ = envelope(hand, z, xs, ys)
        inside = f < 0
        box = [min(box[0], xs[inside].min()), max(box[1], xs[inside].max()),
               min(box[2], ys[inside].min()), max(box[3], ys[inside].max())]
    hand_box = {"x0": float(box[0]), "x1": float(box[1]), "y0": float(box[2]), "y1": float(box[3])}
    margins = {"radial": rng.uniform(3.0, 6.0), "ulnar": rng.uniform(1.5, 4.0), "dorsal": rng.uniform(2.0, 4.0),
               "palmar": rng.uniform(2.5, 5.0), "air": rng.uniform(1.0, 2.0)}
    if field == "whole":
        m = margins["air"]
        return box[0] - m, box[1] + m, box[2] - m, box[3] + m, {"hand_box_mm": hand_box, "margins_mm": margins}
    mc2, mc3 = hand.metacarpals[:2]
    pts_x, pts_y = [], []
    for z in zs_s:
        for mc in (mc2, mc3):
            c = mc.contour(max(z, mc.tip_z + 0.3))
            pts_x.append(c[0])
            pts_y.append(c[1])
    px, py = np.concatenate(pts_x), np.concatenate(pts_y)
    x0 = max(px.min() - margins["radial"], box[0] - margins["air"])
    x1 = min(px.max() + margins["ulnar"], box[1] + margins["air"])
    y0 = max(py.min() - margins["dorsal"], box[2] - margins["air"])
    y1 = min(py.max() + margins["palmar"], box[3] + margins["air"])
    return x0, x1, y0, y1, {"hand_box_mm": hand_box, "margins_mm": margins}


def _rotation(pose: Pose) -> np.ndarray:
    a = np.deg2rad(pose.rotation_deg)
    tx, ty = np.deg2rad(pose.tilt_deg)
    rz = np.array([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(tx), -np.sin(tx)], [0, np.sin(tx), np.cos(tx)]])
    ry = np.array([[np.cos(ty), 0, np.sin(ty)], [0, 1, 0], [-np.sin(ty), 0, np.cos(ty)]])
    return rz @ rx @ ry  # acts on (x, y, z)


def _posed(pose, lat, work: Block, render_block: Block, pivot, arrays):
    """Resample hand-frame arrays (on render_block) at the work block's scanner-frame voxel centres."""
    rinv = _rotation(pose).T
    gx, gy = lat.xs(work.i0, work.i1), lat.ys(work.j0, work.j1)
    yy, xx = np.meshgrid(gy, gx, indexing="ij")
    shift = np.array([pose.shift_mm[1], pose.shift_mm[0], pose.z_shift_mm])
    outs = [np.empty(work.shape, a.dtype) for a, _ in arrays]
    for n, z in enumerate(lat.zs(work.k0, work.k1)):
        q = np.stack([xx.ravel(), yy.ravel(), np.full(xx.size, z)]) - (pivot + shift)[:, None]
        p = rinv @ q + pivot[:, None]
        kk, jj, ii = lat.index(p[0], p[1], p[2])
        coords = np.stack([kk - render_block.k0, jj - render_block.j0, ii - render_block.i0])
        for out, (a, order) in zip(outs, arrays):
            out[n] = ndimage.map_coordinates(a, coords, order=order, mode="nearest").reshape(xx.shape)
    return outs


def generate(spec: IndependentSpec) -> Case:
    t_start = time.perf_counter()
    cal = CALIBRATIONS[spec.scanner]
    v = float(spec.voxel_mm)
    hand = draw_hand(spec.seed)
    rng = np.random.default_rng([spec.seed, 3, 7])
    mc2 = hand.metacarpals[0]
    d0 = float(rng.uniform(0.8, 2.5))  # slice 0 lies this far distal of MC2's tip
    z0 = mc2.tip_z - d0
    zs = z0 + np.arange(spec.n_slices) * v
    x0, x1, y0, y1, extent_info = _extent(hand, zs, spec.field, rng)
    nx, ny = int(np.ceil((x1 - x0) / v)) + 1, int(np.ceil((y1 - y0) / v)) + 1
    scanner = _scanner_settings(rng, spec)
    offset_mm = rng.uniform(-8, 8, size=2)
    lat = Lattice(x0, y0, z0, v)
    field = Block(0, spec.n_slices, 0, ny, 0, nx)
    mw = int(np.ceil(1.5 / v))
    work = Block(0, spec.n_slices, -mw, ny + mw, -mw, nx + mw)
    pad_canon = int(np.ceil(2.5 / v))
    canon_k = (-pad_canon, spec.n_slices + pad_canon)
    pits = draw_pits(hand, spec.seed, spec.erosions, zs[-1] - mc2.tip_z)
    air = cal.density_intercept  # zero attenuation
    t_render = time.perf_counter()
    if spec.pose is None:
        density, truth_w, label = render(hand, lat, work, canon_k, spec.seed, pits, air)
    else:
        pivot = np.array([*mc2.centre(zs[len(zs) // 2]), zs[len(zs) // 2]])
        corners = np.array([[lat.x0 + i * v, lat.y0 + j * v] for i in (work.i0, work.i1) for j in (work.j0, work.j1)])
        reach = float(np.max(np.hypot(corners[:, 0] - pivot[0], corners[:, 1] - pivot[1])))
        pxy = int(np.ceil((2.9 + reach * np.sin(np.deg2rad(8.5))) / v))
        pz = min(int(np.ceil((0.4 + reach * np.sin(np.deg2rad(3.2))) / v)), pad_canon)
        rblock = Block(work.k0 - pz, work.k1 + pz, work.j0 - pxy, work.j1 + pxy, work.i0 - pxy, work.i1 + pxy)
        d_h, t_h, l_h = render(hand, lat, rblock, canon_k, spec.seed, pits, air)
        density, truth_w, label = _posed(spec.pose, lat, work, rblock, pivot,
                                         [(d_h, 1), (t_h.astype(np.uint8), 0), (l_h, 0)])
        truth_w = truth_w.astype(bool)
        del d_h, t_h, l_h
    t_acq = time.perf_counter()
    # --- acquisition
    noise_seed = spec.seed if spec.pose is None else spec.pose.noise_seed
    n_det = int(np.ceil(np.hypot(*work.shape[1:]))) + 4
    n_views = int(np.clip(n_det, 180, MAX_VIEWS))
    dy_mm, dx_mm, motion_info = draw_motion(np.random.default_rng([noise_seed, 3, 8]), spec.motion_grade, n_views)
    mu_px = ((density - cal.density_intercept) / cal.density_slope * (v / 10.0)).astype(np.float32)
    mu_soft_cm = (0.0 - cal.density_intercept) / cal.density_slope
    hb = extent_info["hand_box_mm"]
    w_work, h_hand = work.shape[2] * v, hb["y1"] - hb["y0"]
    l_out = max(0.0, (hb["x1"] - hb["x0"]) - w_work) if spec.field == "crop" else 0.0

    def extra_p(angles):  # tissue of the hand outside the reconstructed block (crop fields): a slab model
        if l_out <= 0:
            return np.zeros(angles.size, np.float32)
        s_, c_ = np.maximum(np.abs(np.sin(angles)), 1e-3), np.maximum(np.abs(np.cos(angles)), 1e-3)
        length = np.minimum(l_out / s_, np.maximum(0.0, h_hand / c_ - w_work / s_))
        return (mu_soft_cm * length / 10.0).astype(np.float32)

    per_px = np.float32(10.0 / v * cal.density_slope)
    # fat at least 1 mm from any other tissue (2-D erosion per slice), inside the written field
    fs = field.slices_in(work)
    lab_f = label[fs]
    soft = np.zeros(lab_f.shape, bool)
    r = max(1, int(round(1.0 / v)))
    st = ndimage.generate_binary_structure(2, 1)
    for n in range(lab_f.shape[0]):
        soft[n] = ndimage.binary_erosion(lab_f[n] == 1, st, iterations=r)
    if soft.sum() < 200:  # tiny test fields: any soft tissue
        soft = (lab_f >= 1) & (lab_f <= 3)
    # photon count I0: a first pass over 3 slices with a quarter of the views measures the noise of
    # unit counts in the soft tissue (variance scales with 1/views), then the full pass uses it
    ks = sorted({spec.n_slices // 4, spec.n_slices // 2, (3 * spec.n_slices) // 4})
    n_pre = max(45, n_views // 4)
    zero = np.zeros(n_pre)
    _, noise_pre = acquire(mu_px[ks], n_pre, (zero, zero), scanner["det_sigma_mm"] / v, scanner["window"],
                           scanner["cutoff"], extra_p, np.random.default_rng([noise_seed, 3, 10]))
    soft_pre = soft[ks]
    noise_f = noise_pre[(slice(None), *fs[1:])]
    sd_unit = float(noise_f[soft_pre].std() if soft_pre.any() else noise_f.std()) * float(per_px) * np.sqrt(n_pre / n_views)
    scale = scanner["noise_sd"] / sd_unit
    recon = acquire(mu_px, n_views, (dy_mm / v, dx_mm / v), scanner["det_sigma_mm"] / v, scanner["window"],
                    scanner["cutoff"], extra_p, np.random.default_rng([noise_seed, 3, 9]), noise_scale=scale)
    del mu_px
    dens = recon[fs] * per_px + np.float32(cal.density_intercept)
    del recon
    native = np.clip(np.round(cal.density_to_native(dens)), -32768, 32767).astype(np.int16)
    truth = truth_w[fs].astype(np.uint8)
    # --- placement in the scanner's field; the left hand is the exact mirror image in x
    width_px = int(round(FIELD_MM[spec.scanner] / v))
    pos_x = int(round(width_px / 2 + (x0 - 0.5 * (hb["x0"] + hb["x1"]) + offset_mm[0]) / v))
    pos_y = int(round(width_px / 2 + (y0 - 0.5 * (hb["y0"] + hb["y1"]) + offset_mm[1]) / v))
    if spec.hand == "left":
        native, truth, soft = native[:, :, ::-1].copy(), truth[:, :, ::-1].copy(), soft[:, :, ::-1].copy()
        pos_x = width_px - (pos_x + nx)
    origin = (0.0, pos_y * v, pos_x * v)
    image = Scan(native, spacing=(v, v, v), origin=origin, calibration=cal, unit=UNIT_NATIVE, kind="image",
                 hand=spec.hand if spec.hand_in_header else None, header={"format": "phantom", "generator": GENERATOR})
    truth_scan = Scan(truth, spacing=(v, v, v), origin=origin, kind="mask", hand=image.hand,
                      header={"format": "phantom", "generator": GENERATOR})
    if not truth.any():
        raise RuntimeError(f"independent3 seed {spec.seed}: MC2 is not in the field")
    result = measure_vbmd(image, truth)
    t_end = time.perf_counter()
    written = cal.native_to_density(native.astype(np.float32))
    info = {
        "generator": GENERATOR, "generator_version": GENERATOR_VERSION, "spec": spec.to_dict(),
        "d100_mg_ha_cm3": float(result.d100_mg_ha_cm3), "mean_slice_area_mm2": float(result.mean_slice_area_mm2),
        "truth_voxels": int(result.n_voxels), "truth_slices": [int(result.first_slice), int(result.last_slice)],
        "shape_zyx": list(native.shape), "spacing_mm": [v, v, v], "origin_mm": list(origin),
        "position_voxels_xyz": [pos_x, pos_y, 0], "scanner_field_px": width_px,
        "calibration": cal.to_dict(),
        "slice0_distal_of_mc2_tip_mm": d0,
        "field_rect_hand_frame_mm": {"x0": x0, "x1": x0 + (nx - 1) * v, "y0": y0, "y1": y0 + (ny - 1) * v},
        **extent_info,
        "scanner_settings": {**{k: (float(x) if not isinstance(x, str) else x) for k, x in scanner.items()},
                             "n_views": n_views, "photons_per_bin_I0": float(1.0 / scale ** 2),
                             "noise_sd_measured_soft_tissue": float(written[soft].std()) if soft.any() else None,
                             "outside_tissue_slab_mm": l_out},
        "motion": motion_info,
        "erosion_pits": pits,
        "anatomy": hand.to_dict(),
        "seconds": {"render": round(t_acq - t_render, 2), "acquire": round(t_end - t_acq, 2),
                    "total": round(t_end - t_start, 2)},
    }
    return Case(image=image, truth=truth_scan, info=info, soft=soft)


# --- files --------------------------------------------------------------------------------------

def case_paths(out_dir, name: str) -> dict:
    out_dir = Path(out_dir)
    return {"image": out_dir / f"{name}.aim", "mask": out_dir / f"{name}_mask.aim", "truth": out_dir / f"{name}_truth.json"}


def is_cached(out_dir, name: str, spec: IndependentSpec) -> bool:
    paths = case_paths(out_dir, name)
    if not all(p.exists() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return (info.get("generator") == GENERATOR and info.get("generator_version") == GENERATOR_VERSION
            and info.get("spec") == json.loads(json.dumps(spec.to_dict())))


def write_case(case: Case, out_dir, name: str, overwrite: bool = False) -> dict:
    """``name.aim`` (int16 native, calibration in the log), ``name_mask.aim`` (the truth), ``name_truth.json``;
    each written atomically. The JSON is written last, so a cached case is a complete one."""
    paths = case_paths(out_dir, name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if not overwrite and any(p.exists() for p in paths.values()):
        raise FileExistsError(f"{name}: files exist in {out_dir} (overwrite=True replaces them)")
    paths["truth"].unlink(missing_ok=True)
    write_image(paths["image"], case.image)
    write_mask(paths["mask"], case.truth, parent=case.image)
    with atomic_path(paths["truth"]) as tmp:
        Path(tmp).write_text(json.dumps(case.info, indent=1), encoding="utf-8")
    return paths


# --- the two sets ---------------------------------------------------------------------------------

EVALUATION_FIRST_SEED = 90_000
PRECISION_FIRST_SEED = 95_000

_GRIDS = [(0.082, "xtremect1", 110), (0.061, "xtremect2", 168), (0.082, "xtremect2", 110)]


def evaluation_specs(n: int = 48, first_seed: int = EVALUATION_FIRST_SEED) -> list[IndependentSpec]:
    """Every (motion 0-3, erosions 0-3) pair three times in 48 cases, once in a whole-hand field and
    twice cropped; hands and grids (XtremeCT 82 um, XtremeCT II 61 um, XtremeCT II at 82 um) balanced
    across them in a fixed shuffled order."""
    order = np.random.default_rng([first_seed, 3, 12]).permutation(max(n, 48))
    specs = []
    for i in range(n):
        combo = i % 16
        motion, erosions = combo % 4, combo // 4
        field = "whole" if (i // 16 + combo) % 3 == 0 else "crop"
        o = int(order[i % order.size])
        voxel, scanner, slices = _GRIDS[(0, 1, 0, 1, 2)[o % 5]]
        specs.append(IndependentSpec(seed=first_seed + i, hand="left" if (o // 5) % 2 else "right", field=field,
                                     voxel_mm=voxel, scanner=scanner, n_slices=slices, motion_grade=motion,
                                     erosions=erosions))
    return specs


def precision_specs(n_anatomies: int = 20, repeats: int = 3, first_seed: int = PRECISION_FIRST_SEED) -> list[list[IndependentSpec]]:
    """Per anatomy, ``repeats`` scans of the same hand, each repositioned (Pose.draw) with fresh
    noise and a motion grade of 0-2: cropped fields, both hands, both grids, some erosions."""
    groups = []
    for a in range(n_anatomies):
        seed = first_seed + a
        voxel, scanner, slices = _GRIDS[0] if a % 3 != 1 else _GRIDS[1]
        groups.append([IndependentSpec(seed=seed, hand="left" if a % 2 else "right", field="crop", voxel_mm=voxel,
                                       scanner=scanner, n_slices=slices, motion_grade=(a + r) % 3,
                                       erosions=(a % 3 if a % 4 == 3 else 0), pose=Pose.draw(seed * 10 + r))
                       for r in range(repeats)])
    return groups


__all__ = ["CALIBRATIONS", "GENERATOR", "GENERATOR_VERSION", "Case", "IndependentSpec", "Pose", "case_paths",
           "evaluation_specs", "generate", "is_cached", "precision_specs", "write_case"]
