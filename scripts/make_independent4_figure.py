"""Figure of the fourth independent phantom family: docs/images/independent4_slices.png.

    python scripts/make_independent4_figure.py [--out docs/images/independent4_slices.png]

Seeds 4001-4003 only (never the evaluation or precision seeds): per case an axial slice through the
joint, one through MC2's head, and a sagittal cut through MC2's axis, window -150 to 1200 mg HA/cm3,
with the truth's outline.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import independent4 as gen  # noqa: E402

CASES = [
    gen.IndependentSpec(seed=4001, field="crop", voxel_mm=0.082, scanner="xtremect1", n_slices=110, motion_grade=0,
                        erosions=1),
    gen.IndependentSpec(seed=4002, field="whole", hand="left", voxel_mm=0.082, scanner="xtremect2", n_slices=110,
                        motion_grade=1, erosions=0),
    gen.IndependentSpec(seed=4003, field="crop", voxel_mm=0.061, scanner="xtremect2", n_slices=168, motion_grade=3,
                        erosions=2),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "images" / "independent4_slices.png"))
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(len(CASES), 3, figsize=(12, 3.6 * len(CASES)),
                             gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for row, spec in zip(axes, CASES):
        case = gen.generate(spec)
        d = case.image.density()
        t = case.truth.data.astype(bool)
        zs = np.nonzero(t.any(axis=(1, 2)))[0]
        first = int(zs[0])
        picks = [max(0, first + int(round(0.5 / spec.voxel_mm))), min(d.shape[0] - 1, first + int(round(4.5 / spec.voxel_mm)))]
        for ax, k in zip(row[:2], picks):
            ax.imshow(d[k], cmap="gray", vmin=-150, vmax=1200, interpolation="nearest")
            ax.contour(t[k], levels=[0.5], colors="tab:orange", linewidths=0.6)
            ax.set_title(f"seed {spec.seed} {spec.field} {spec.hand} {spec.voxel_mm} mm, motion {spec.motion_grade}, "
                         f"erosions {spec.erosions}: slice {k}", fontsize=7)
            ax.axis("off")
        ys, xs = np.nonzero(t.any(axis=0))
        xc = int(round(xs.mean()))
        ax = row[2]
        ax.imshow(d[:, :, xc].T, cmap="gray", vmin=-150, vmax=1200, interpolation="nearest", aspect="auto")
        ax.contour(t[:, :, xc].T, levels=[0.5], colors="tab:orange", linewidths=0.6)
        ax.set_title(f"sagittal x = {xc} (z left to right), D100 {case.info['d100_mg_ha_cm3']:.0f}", fontsize=7)
        ax.axis("off")
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=70)
    plt.close(fig)
    from PIL import Image  # a fixed palette keeps the file small: 63 greys and the contour's orange

    palette = Image.new("P", (1, 1))
    greys = [round(i * 255 / 62) for i in range(63)]
    palette.putpalette([c for g in greys for c in (g, g, g)] + [255, 127, 14] + [0, 0, 0] * 192)
    Image.open(out).convert("RGB").quantize(palette=palette, dither=Image.Dither.NONE).save(out, optimize=True)
    print(f"wrote {out} ({out.stat().st_size // 1024} KB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
