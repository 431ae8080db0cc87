"""Small synthetic rating studies for the tests/test_rating_*.py files: a scan and two contours per case."""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np

from napari_vbmd.io import write_image, write_mask
from napari_vbmd.scan import Scan

SOURCES = ("expert", "network v2")


def make_case_files(folder: Path, case_id: str, shape=(6, 24, 24), seed=0, contour_b_format=".tif"):
    """A bone-like disc in a noisy scan; contour A a disc, contour B a slightly larger disc.

    Contour B is written in another format than A on purpose: the study must hide that difference.
    """
    rng = np.random.default_rng(seed)
    z, y, x = np.indices(shape)
    cy, cx = shape[1] / 2, shape[2] / 2
    r = np.hypot(y - cy, x - cx)
    data = (rng.normal(100, 20, shape) + 600 * (r < 7)).astype(np.float32)
    scan = Scan(data=data, spacing=(0.0607, 0.0607, 0.0607), origin=(1.0, 2.0, 3.0), unit="mg_ha_cm3")
    folder.mkdir(parents=True, exist_ok=True)
    scan_path = write_image(folder / f"{case_id}_scan.nii.gz", scan)
    a = scan.with_data((r < 7).astype(np.uint8), kind="mask", unit="unknown")
    b = scan.with_data((r < 8.5).astype(np.uint8), kind="mask", unit="unknown")
    a_path = write_mask(folder / f"{case_id}_expert_contour.nii.gz", a)
    b_path = write_mask(folder / f"{case_id}_network_contour{contour_b_format}", b)
    return scan_path, a_path, b_path


def make_manifest(folder: Path, n_cases: int = 3, name: str = "manifest.csv") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for i in range(n_cases):
        case_id = f"case{i + 1:02d}"
        scan, a, b = make_case_files(folder / "inputs", case_id, seed=i)
        rows.append({"case_id": case_id, "scan": str(scan.relative_to(folder)), "contour_a": str(a.relative_to(folder)),
                     "source_a": SOURCES[0], "contour_b": str(b.relative_to(folder)), "source_b": SOURCES[1]})
    path = folder / name
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


PHANTOM_SOURCES = ("expert reader", "network unet2d")


def make_phantom_study_inputs(folder: Path, n_cases: int = 3, n_slices: int = 24, spacing_mm: float = 0.246):
    """Small MCP-joint phantoms; contour A the truth (AIM), contour B the truth dilated or eroded (NIfTI).

    Returns the manifest path and the file names of all contours (they name their sources on purpose:
    the blinding tests check that none of it reaches the rater).
    """
    from scipy import ndimage

    from napari_vbmd.phantom import PhantomSpec, generate_phantom

    folder.mkdir(parents=True, exist_ok=True)
    inputs = folder / "inputs"
    inputs.mkdir(exist_ok=True)
    in_plane = np.zeros((3, 3, 3), bool)
    in_plane[1] = ndimage.generate_binary_structure(2, 1)
    rows, contour_files = [], []
    for i in range(n_cases):
        case_id = f"P{i + 1:03d}"
        phantom = generate_phantom(PhantomSpec(seed=100 + i, hand=("right", "left")[i % 2], n_slices=n_slices,
                                               spacing_mm=spacing_mm))
        truth = phantom.truth.data.astype(bool)
        if i % 2 == 0:
            other = ndimage.binary_dilation(truth, in_plane, iterations=2)
        else:
            other = ndimage.binary_erosion(truth, in_plane, iterations=1)
        scan_path = write_image(inputs / f"{case_id}.aim", phantom.image)
        a_path = write_mask(inputs / f"{case_id}_expert_truth_mask.aim", phantom.truth, parent=phantom.image)
        b_path = write_mask(inputs / f"{case_id}_network_unet2d_pred.nii.gz",
                            phantom.truth.with_data(other.astype(np.uint8)))
        contour_files += [a_path, b_path]
        rows.append({"case_id": case_id, "scan": f"inputs/{scan_path.name}",
                     "contour_a": f"inputs/{a_path.name}", "source_a": PHANTOM_SOURCES[0],
                     "contour_b": f"inputs/{b_path.name}", "source_b": PHANTOM_SOURCES[1]})
    path = folder / "manifest.csv"
    with open(path, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path, contour_files
