"""Figure for docs/phantoms.md: slices of synthetic MCP-joint phantoms with their MC2 truth.

    python scripts/make_phantom_figure.py [--seed 2026] [--out docs/images/phantom_slices.png]

Top row: one right-hand phantom (joint space with the phalanx base, MC2 head, neck; a reformat
along the bones). Bottom row: the same phantom as a left hand, with motion grade 3, with three
erosions, and in the full 1536 x 1536 field of view. Red: the truth contour (MC2 periosteal
envelope). Grey scale: -150 to 1200 mg HA/cm3.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from napari_vbmd.phantom import PhantomSpec, generate_phantom  # noqa: E402

WINDOW = dict(cmap="gray", vmin=-150, vmax=1200, interpolation="nearest")


def show(ax, image, truth, title, spacing, aspect=1.0):
    ny, nx = image.shape
    ax.imshow(image, extent=(0, nx * spacing, ny * spacing * aspect, 0), **WINDOW)
    if truth is not None and truth.any():
        xs = (np.arange(nx) + 0.5) * spacing
        ys = (np.arange(ny) + 0.5) * spacing * aspect
        ax.contour(xs, ys, truth.astype(float), [0.5], colors="red", linewidths=0.8)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def scale_bar(ax, length_mm=5.0):
    x1 = ax.get_xlim()[1]
    y = ax.get_ylim()[0]
    ax.plot([x1 - 1 - length_mm, x1 - 1], [y - 1.2, y - 1.2], color="white", linewidth=2.5)
    ax.text(x1 - 1 - length_mm / 2, y - 1.8, f"{length_mm:g} mm", color="white", ha="center", fontsize=7)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=2026)
    parser.add_argument("--out", default=str(Path(__file__).resolve().parents[1] / "docs/images/phantom_slices.png"))
    args = parser.parse_args(argv)

    def make(**changes):
        started = time.perf_counter()
        spec = PhantomSpec(seed=args.seed, **changes)
        phantom = generate_phantom(spec)
        print(f"{spec}: {time.perf_counter() - started:.1f} s, D100 {phantom.truth_info['d100_mg_ha_cm3']:.1f}",
              file=sys.stderr)
        return phantom

    right = make()
    left = make(hand="left")
    moved = make(motion_grade=3)
    eroded = make(erosions=3)
    full = make(fov="full", n_slices=64)

    h = right.image.spacing[0]
    info = right.truth_info
    first = info["first_slice"]
    density = right.image.density()
    truth = right.truth.data
    head = min(first + int(round(2.5 / h)), density.shape[0] - 1)
    neck = density.shape[0] - 1
    joint = max(first - int(round(1.0 / h)), 0)
    # the reformat passes through MC2's centre
    zs, ys, xs = np.nonzero(truth)
    y_mid = int(np.median(ys))
    x0, x1 = max(xs.min() - int(4 / h), 0), min(xs.max() + int(4 / h), truth.shape[2])

    fig, axes = plt.subplots(2, 4, figsize=(16, 8.2))
    show(axes[0, 0], density[joint], truth[joint], f"joint space, phalanx base (slice {joint})", h)
    show(axes[0, 1], density[head], truth[head], f"MC2 head (slice {head}); MC3 ulnar", h)
    show(axes[0, 2], density[neck], truth[neck], f"towards the neck (slice {neck})", h)
    show(axes[0, 3], density[:, y_mid, x0:x1], truth[:, y_mid, x0:x1], "MC2 reformatted along the bone (distal at top)", h)
    scale_bar(axes[0, 1])

    show(axes[1, 0], left.image.density()[head], left.truth.data[head], "same phantom, left hand (mirror)", h)
    show(axes[1, 1], moved.image.density()[head], moved.truth.data[head], "motion grade 3 (same slice)", h)
    eroded_truth = eroded.truth.data
    lost = (truth & ~eroded_truth.astype(bool)).sum(axis=(1, 2))
    k = int(np.argmax(lost))
    show(axes[1, 2], eroded.image.density()[k], eroded_truth[k], f"3 erosions; truth follows the pit (slice {k})", h)
    fh = full.image.spacing[0]
    kf = full.image.shape[0] - 1
    show(axes[1, 3], full.image.density()[kf], full.truth.data[kf],
         f"full field of view, {full.image.shape[1]} x {full.image.shape[2]}", fh)
    scale_bar(axes[1, 3], 20.0)

    fig.suptitle(f"Synthetic HR-pQCT phantom, seed {args.seed}: {right.image.shape[0]} slices at {h * 1000:.0f} um, "
                 f"D100 {info['d100_mg_ha_cm3']:.0f} mg HA/cm3, cortex {info['design']['cortical_density_mg_ha_cm3']:.0f} "
                 f"mg HA/cm3; red: MC2 truth; window -150..1200 mg HA/cm3", fontsize=10)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    print(out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
