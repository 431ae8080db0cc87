"""Build the example evaluation: phantoms with their true masks as reference and perturbed masks
(eroded, dilated, shifted, with a bite taken out, segmented by the classical method) as prediction,
then run `vbmd evaluate` on them.

    python docs/example-report/make_example.py OUT_DIR

writes OUT_DIR/cases (scans and reference masks), OUT_DIR/predicted, OUT_DIR/report.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from napari_vbmd.io import write_mask
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

PERTURBATIONS = ["dilate", "erode", "shift", "bite", "classical", "shift_dilate", "erode2", "none"]


def perturb(phantom, how: str, seed: int) -> np.ndarray:
    truth = phantom.truth.data != 0
    # in-plane only: contours are drawn slice by slice, and a 3-D erosion would empty the end slices
    ball = np.zeros((3, 3, 3), bool)
    ball[1] = ndimage.generate_binary_structure(2, 1)
    if how == "dilate":
        return ndimage.binary_dilation(truth, ball)
    if how == "erode":
        return ndimage.binary_erosion(truth, ball)
    if how == "erode2":
        return ndimage.binary_erosion(truth, ball, iterations=2)
    if how == "shift":
        return np.roll(truth, 2, axis=2)
    if how == "shift_dilate":
        return ndimage.binary_dilation(np.roll(truth, 1, axis=1), ball)
    if how == "bite":
        out = truth.copy()
        zs, ys, xs = np.nonzero(truth)
        rng = np.random.default_rng(seed)
        k = rng.integers(zs.size)
        zz, yy, xx = np.ogrid[: truth.shape[0], : truth.shape[1], : truth.shape[2]]
        out[(zz - zs[k]) ** 2 + (yy - ys[k]) ** 2 + (xx - xs[k]) ** 2 <= 5**2] = False
        return out
    if how == "classical":
        from napari_vbmd.segmentation.pipeline import segment

        return np.asarray(segment(phantom.image, model="classical").mask.data) != 0
    return truth


def main(out: Path, n: int = 6, n_slices: int = 40, spacing_mm: float = 0.164) -> None:
    cases, predicted = out / "cases", out / "predicted"
    cases.mkdir(parents=True, exist_ok=True)
    predicted.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        name = f"case{i + 1:02d}"
        how = PERTURBATIONS[i % len(PERTURBATIONS)]
        phantom = generate_phantom(PhantomSpec(seed=100 + i, n_slices=n_slices, spacing_mm=spacing_mm,
                                               hand="left" if i % 3 == 2 else "right", erosions=i % 3))
        write_phantom(phantom, cases, name, overwrite=True)
        mask = phantom.truth.with_data(perturb(phantom, how, i).astype(np.uint8))
        write_mask(predicted / f"{name}_pred.nii.gz", mask)
        print(name, how, file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), n=int(sys.argv[2]) if len(sys.argv) > 2 else 6)
