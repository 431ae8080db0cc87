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
