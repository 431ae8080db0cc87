"""Figure for docs/independent-phantoms.md: slices of the independent validation family.

    python scripts/make_independent_figure.py [--cache /tmp/vbmd-independent-eval] [--out docs/images/independent_slices.png]

Reads cases written by benchmarks/eval_independent.py (so the figure shows exactly what was
evaluated). Top row: one cropped XtremeCT case (phalanx base, MC2 head, towards the neck, a
reformat along MC2). Bottom row: an XtremeCT II case at 0.061 mm (a left hand), motion grade 3,
erosions (a slice through a pit), and a whole-hand field. Red: the truth contour. Grey scale:
-150 to 1200 mg HA/cm3, as docs/images/phantom_slices.png.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

from independent import case_paths, evaluation_specs  # noqa: E402
from napari_vbmd.io import read_mask, read_scan  # noqa: E402

WINDOW = dict(cmap="gray", vmin=-150, vmax=1200, interpolation="nearest")


def show(ax, image, truth, title, spacing, bar_mm=5.0):
    ny, nx = image.shape
    ax.imshow(image, extent=(0, nx * spacing, ny * spacing, 0), **WINDOW)
    if truth is not None and truth.any():
        xs, ys = (np.arange(nx) + 0.5) * spacing, (np.arange(ny) + 0.5) * spacing
        ax.contour(xs, ys, truth.astype(float), [0.5], colors="red", linewidths=0.7)
    ax.plot([nx * spacing - bar_mm - 1, nx * spacing - 1], [ny * spacing - 1] * 2, color="white", lw=2)
    ax.text(nx * spacing - 1 - bar_mm / 2, ny * spacing - 1.6, f"{bar_mm:g} mm", color="white", fontsize=7, ha="center")
    ax.set_title(title, fontsize=8)
    ax.set_xticks([])
    ax.set_yticks([])


def load(cache: Path, spec):
    paths = case_paths(cache, f"indep_{spec.seed}")
    image = read_scan(paths["image"])
    truth = read_mask(paths["mask"], like=image).data.astype(bool)
    return image, image.density(), truth, json.loads(paths["truth"].read_text())


def pick(specs, **want):
    return next(s for s in specs if all(getattr(s, k) == v for k, v in want.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", default="/tmp/vbmd-independent-eval")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/independent_slices.png"))
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    specs = evaluation_specs()
    fig, axes = plt.subplots(2, 4, figsize=(17, 8.2), gridspec_kw={"width_ratios": [1, 1, 1, 1]})

    spec = pick(specs, field="crop", voxel_mm=0.082, motion_grade=0, hand="right")
    image, density, truth, info = load(cache, spec)
    h = image.spacing[0]
    first, last = info["first_slice"], info["last_slice"]
    for ax, k, what in zip(axes[0, :3], (max(first - 12, 0), (first + last) // 2, last),
                           ("joint space, phalanx base", "MC2 head; MC3 ulnar", "towards the neck")):
        show(ax, density[k], truth[k], f"{what} (slice {k})", h)
    x = int(np.argmax(truth.sum(axis=(0, 1))))
    show(axes[0, 3], density[:, :, x], truth[:, :, x], "reformat along MC2 (distal at top)", h)
    title = (f"Independent family, {spec.hand} hand, seed {spec.seed}: {spec.n_slices} slices at {h * 1000:.0f} um, "
             f"D100 {info['d100_mg_ha_cm3']:.0f} mg HA/cm3, noise SD {info['design']['scanner']['noise_sd']:.0f}")

    panels = [
        (pick(specs, field="crop", voxel_mm=0.061, hand="left"), "XtremeCT II, 61 um, left hand"),
        (pick(specs, field="crop", motion_grade=3), "motion grade 3"),
        (next(s for s in specs if s.field == "crop" and s.erosions == 3), "erosions: the truth follows the pit"),
        (pick(specs, field="whole", voxel_mm=0.082), "whole-hand field"),
    ]
    for ax, (spec, what) in zip(axes[1], panels):
        image, density, truth, info = load(cache, spec)
        h = image.spacing[0]
        if spec.erosions:
            ref = truth.copy()
            from scipy import ndimage

            filled = np.stack([ndimage.binary_closing(t, iterations=int(round(1.0 / h))) for t in truth])
            pit_area = (filled & ~ref).reshape(ref.shape[0], -1).sum(axis=1)
            k = int(np.argmax(pit_area))
        else:
            k = (info["first_slice"] + info["last_slice"]) // 2
        bar = 20.0 if spec.field == "whole" else 5.0
        show(ax, density[k], truth[k], f"{what} ({spec.scanner}, {spec.voxel_mm} mm, slice {k})", h, bar)
    fig.suptitle(title + "; red: MC2 truth; window -150..1200 mg HA/cm3", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=80)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
