"""Figure of the fifth independent phantom family: docs/images/independent5_slices.png.

    python scripts/make_independent5_figure.py [--out docs/images/independent5_slices.png]

Seeds 5001-5003 only (never the evaluation or precision seeds): a crop with an erosion, a left whole hand
at 0.082 mm, a 0.061 mm XtremeCT II crop with motion grade 3. Per case an axial slice through the joint,
one through the head, and a sagittal cut through MC2; window -150..1200 mg HA/cm3; the truth's outline
in red. No model is run.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from independent5 import IndependentSpec, generate  # noqa: E402

CASES = [
    ("5001: right crop, 0.082 mm XtremeCT, 1 erosion",
     IndependentSpec(seed=5001, field="crop", erosions=1)),
    ("5002: left whole hand, 0.082 mm XtremeCT",
     IndependentSpec(seed=5002, hand="left", field="whole", motion_grade=1, erosions=2)),
    ("5003: right crop, 0.061 mm XtremeCT II, motion 3",
     IndependentSpec(seed=5003, field="crop", voxel_mm=0.061, scanner="xtremect2", n_slices=168, motion_grade=3)),
]
WINDOW = (-150, 1200)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "independent5_slices.png"))
    args = parser.parse_args(argv)
    fig, axes = plt.subplots(3, 3, figsize=(15, 13.5), gridspec_kw={"width_ratios": [1.25, 1.25, 1]})
    for row, (title, spec) in enumerate(CASES):
        case = generate(spec)
        dens = case.image.density()
        truth = case.truth.data
        v = case.image.spacing[0]
        present = np.nonzero(truth.reshape(truth.shape[0], -1).any(axis=1))[0]
        k_joint = max(int(present[0]) - int(round(0.3 / v)), 0)
        k_head = min(int(present[0]) + int(round(4.0 / v)), truth.shape[0] - 1)
        col = int(round(np.nonzero(truth)[2].mean()))
        for c, (k, name) in enumerate(((k_joint, "joint"), (k_head, "head"))):
            ax = axes[row, c]
            ax.imshow(dens[k], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest")
            if truth[k].any():
                ax.contour(truth[k], [0.5], colors="red", linewidths=0.7)
            ax.set_title(f"{title}\naxial slice {k} ({name}, {k * v:.1f} mm)", fontsize=9)
            ax.set_axis_off()
        ax = axes[row, 2]
        rows = np.nonzero(truth[:, :, col].any(axis=0))[0]  # MC2's dorsal-palmar extent, plus 5 mm
        pad = int(round(5.0 / v))
        y0, y1 = max(int(rows[0]) - pad, 0), min(int(rows[-1]) + pad + 1, truth.shape[1])
        ax.imshow(dens[:, y0:y1, col], cmap="gray", vmin=WINDOW[0], vmax=WINDOW[1], interpolation="nearest")
        ax.contour(truth[:, y0:y1, col], [0.5], colors="red", linewidths=0.7)
        ax.set_title(f"sagittal through MC2 (x column {col}); slice 0 at top\n"
                     f"D100 {case.info['d100_mg_ha_cm3']:.0f} mg HA/cm3, noise SD in fat "
                     f"{case.info['noise_sd_fat_mg_ha_cm3']:.0f}", fontsize=9)
        ax.set_axis_off()
    fig.suptitle("independent5 phantoms (window -150..1200 mg HA/cm3, truth outlined in red)", fontsize=11)
    fig.tight_layout()
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=62)
    print(out, f"{out.stat().st_size / 1024:.0f} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
