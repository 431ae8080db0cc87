"""Figure and measured figures of the third independent phantom family (benchmarks/independent3).

    python scripts/make_independent3_figure.py [--out docs/images/independent3_slices.png]
    python scripts/make_independent3_figure.py --measure 10    # noise, D100, area, time over 10 cases

Seeds 3000-3999 are used here: neither the evaluation set (90 000-) nor the precision set (95 000-)
is looked at. Window -150 to 1200 mg HA/cm3; the truth's outline in red.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

from independent3 import IndependentSpec, generate  # noqa: E402

WINDOW = (-150, 1200)


def _mc2_column(truth: np.ndarray) -> int:
    return int(round(np.nonzero(truth.any(axis=(0, 1)))[0].mean()))


def _show(ax, image, truth, title, aspect=1.0):
    ax.imshow(image, cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], aspect=aspect, interpolation="nearest")
    if truth.any():
        ax.contour(truth.astype(float), [0.5], colors="red", linewidths=0.6)
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def figure(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    specs = [
        ("crop, XtremeCT 82 µm, right", IndependentSpec(seed=3001, hand="right", field="crop", voxel_mm=0.082)),
        ("crop, XtremeCT II 61 µm, left, motion 3, 2 erosions",
         IndependentSpec(seed=3002, hand="left", field="crop", voxel_mm=0.061, scanner="xtremect2", n_slices=168,
                         motion_grade=3, erosions=2)),
        ("whole hand, XtremeCT 82 µm, right, 1 erosion",
         IndependentSpec(seed=3003, hand="right", field="whole", voxel_mm=0.082, erosions=1)),
    ]
    fig, axes = plt.subplots(3, 4, figsize=(16, 11.5), gridspec_kw={"width_ratios": [1, 1, 1, 0.8]})
    for row, (label, spec) in zip(axes, specs):
        t = time.perf_counter()
        case = generate(spec)
        print(f"{label}: {time.perf_counter() - t:.0f} s, D100 {case.info['d100_mg_ha_cm3']:.1f}", file=sys.stderr)
        dens = case.image.density()
        truth = case.truth.data.astype(bool)
        v = spec.voxel_mm
        d0 = case.info["slice0_distal_of_mc2_tip_mm"]
        k_joint = int(round(0.5 * d0 / v))
        pits = case.info["erosion_pits"]
        k_head = int(round((d0 + (pits[0]["t_mm"] if pits else 3.5)) / v))
        k_neck = spec.n_slices - 3
        for ax, k, what in zip(row[:3], (k_joint, k_head, k_neck),
                               ("joint space / phalanx base", "head" + (" (erosion)" if pits else ""), "neck")):
            _show(ax, dens[k], truth[k], f"{label}\nslice {k} ({k * v:.1f} mm): {what}")
        col = _mc2_column(truth)
        _show(row[3], dens[:, :, col], truth[:, :, col], f"reformat along MC2 (x = {col}); distal at top")
    fig.tight_layout()
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(f"wrote {out}", file=sys.stderr)


def acf(values: np.ndarray, mask: np.ndarray, axis: int, lags=(1, 2, 3)) -> list[float]:
    x = np.where(mask, values - values[mask].mean(), 0.0)
    var = float((x[mask] ** 2).mean())
    out = []
    for lag in lags:
        a = np.take(x, np.arange(0, x.shape[axis] - lag), axis=axis)
        b = np.take(x, np.arange(lag, x.shape[axis]), axis=axis)
        m = np.take(mask, np.arange(0, x.shape[axis] - lag), axis=axis) & np.take(mask, np.arange(lag, x.shape[axis]), axis=axis)
        out.append(float((a[m] * b[m]).mean() / var))
    return out


def measure(n: int) -> dict:
    rows = []
    grids = [(0.082, "xtremect1", 110), (0.061, "xtremect2", 168), (0.082, "xtremect2", 110)]
    for i in range(n):
        voxel, scanner, slices = grids[i % 3]
        spec = IndependentSpec(seed=3100 + i, hand="left" if i % 2 else "right", field="whole" if i % 5 == 4 else "crop",
                               voxel_mm=voxel, scanner=scanner, n_slices=slices, motion_grade=i % 4, erosions=(i // 2) % 4)
        t = time.perf_counter()
        case = generate(spec)
        seconds = time.perf_counter() - t
        dens = case.image.density().astype(np.float64)
        soft = case.soft
        row = {"seed": spec.seed, "field": spec.field, "voxel_mm": voxel, "scanner": scanner, "motion": spec.motion_grade,
               "erosions": spec.erosions, "seconds": round(seconds, 1), "d100": round(case.info["d100_mg_ha_cm3"], 1),
               "area_mm2": round(case.info["mean_slice_area_mm2"], 1),
               "noise_sd_target": round(case.info["scanner_settings"]["noise_sd"], 1),
               "noise_sd_fat": round(float(dens[soft].std()), 1),
               "acf_x": [round(a, 3) for a in acf(dens, soft, 2)], "acf_y": [round(a, 3) for a in acf(dens, soft, 1)],
               "acf_z": [round(a, 3) for a in acf(dens, soft, 0)],
               "mc3_gap_mm": round(case.info["anatomy"]["soft"]["mc3_gap_mm"], 2),
               "joint_space_mm": round(case.info["anatomy"]["phalanges"][0]["gap_mm"], 2)}
        print(json.dumps(row), flush=True)
        rows.append(row)
    d100 = [r["d100"] for r in rows]
    area = [r["area_mm2"] for r in rows]
    summary = {"n": n, "d100_min": min(d100), "d100_max": max(d100), "d100_mean": round(float(np.mean(d100)), 1),
               "area_min": min(area), "area_max": max(area), "area_mean": round(float(np.mean(area)), 1)}
    print(json.dumps(summary))
    return {"cases": rows, "summary": summary}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "independent3_slices.png"))
    parser.add_argument("--measure", type=int, help="measure this many cases instead of drawing the figure")
    args = parser.parse_args(argv)
    if args.measure:
        measure(args.measure)
    else:
        figure(Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
