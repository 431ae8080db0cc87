"""Small synthetic MCP-like volumes for the segmentation tests (no phantom generator needed).

MC2: a tube (cortex ~950 mg HA/cm3, marrow ~250) running along z from slice 0, ending in a domed
head; MC3: a thinner tube beside it; soft tissue ~40 around, air ~-100 far out. Densities are stored
as native values with a Scanco-like calibration so the density path is exercised.
"""
from __future__ import annotations

import numpy as np

from napari_vbmd.scan import UNIT_NATIVE, Calibration, Scan

CALIBRATION = Calibration(density_slope=1600.0, density_intercept=-390.0, mu_scaling=8192.0, mu_water=0.24)


def synthetic_mcp(
    shape=(24, 96, 128), spacing=0.1, mc2_center_x=48, hand="right", noise=15.0, seed=0,
    head_slice=18, offset_x=0,
):
    """(Scan, truth mask bool). MC2 sits at x=mc2_center_x (+offset_x); for a left hand everything
    is mirrored in x, as the anatomy would be."""
    rng = np.random.default_rng(seed)
    nz, ny, nx = shape
    z, y, x = np.meshgrid(np.arange(nz), np.arange(ny), np.arange(nx), indexing="ij")
    cy = 0.42 * ny  # off-centre in y, so a 180 degree rotation differs from a mirror in x
    density = np.full(shape, 40.0, dtype=np.float32)
    density[(y - ny / 2) ** 2 / (0.48 * ny) ** 2 + (x - nx / 2) ** 2 / (0.48 * nx) ** 2 > 1] = -100.0

    def bone(cx, radius, end, cortex_mm=0.4):
        r = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
        # domed head: radius shrinks over the last 5 slices before `end`
        shrink = np.clip((z - (end - 5)) / 5.0, 0, 1)
        rz = radius * np.sqrt(np.clip(1 - shrink**2, 0, 1))
        inside = (r <= rz) & (z <= end)
        cortex = inside & (r > rz - cortex_mm / spacing)
        return inside, cortex

    mc2_x = mc2_center_x + offset_x
    mc2, mc2_cortex = bone(mc2_x, 16, head_slice)
    mc3, mc3_cortex = bone(mc2_x + 40, 11, head_slice - 2)
    for inside, cortex in ((mc3, mc3_cortex), (mc2, mc2_cortex)):
        density[inside] = 250.0
        density[cortex] = 950.0
    density += rng.normal(0, noise, shape).astype(np.float32)
    truth = mc2
    if hand == "left":
        density = density[..., ::-1].copy()
        truth = truth[..., ::-1].copy()
    native = CALIBRATION.density_to_native(density).round().astype(np.int16)
    scan = Scan(native, (spacing,) * 3, origin=(1.0, 2.0, 3.0), calibration=CALIBRATION, unit=UNIT_NATIVE,
                hand=hand)
    return scan, truth


def dice(a, b) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * (a & b).sum() / max(1, a.sum() + b.sum())
