"""Repeat scans of a training-generator phantom (``PhantomSpec.pose_seed``): the same anatomy
repositioned in the field of view, with fresh noise and motion.

Kept apart from ``phantom.py`` (which only calls these): the draw of a pose, and sampling the
phantom's texture tiles where each voxel's hand position lay in the unposed scan, so that the
trabeculae move with the hand.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

#: Repositioning within what a hand holder allows (Neeteson et al. 2023 and the precision protocol of
#: docs/default-model.md): in-plane rotation (degrees) and shift (mm, each of y and x).
ROTATION_DEG = 8.0
SHIFT_MM = 2.0


def pose_of(seed: int, pose_seed: int | None) -> dict | None:
    """The pose of repeat scan ``pose_seed`` of phantom ``seed`` (None: the usual, unposed phantom).

    Rotation about the hand's centre within +-8 degrees, shift within +-2 mm in y and x; the seeds of
    its noise (never one an unposed phantom uses) and its motion. No tilt: the generator evaluates its
    bones slice by slice in the scanner's frame.
    """
    if pose_seed is None:
        return None
    rng = np.random.default_rng(np.random.SeedSequence([0x5BD, seed, 0x905E, pose_seed]))
    rotation_deg = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
    shift = tuple(float(v) for v in rng.uniform(-SHIFT_MM, SHIFT_MM, size=2))
    noise_seed = int(rng.integers(1 << 31, 1 << 32))
    return {"pose_seed": int(pose_seed), "rotation_deg": rotation_deg, "shift_mm_yx": shift, "noise_seed": noise_seed}


def motion_rng(seed: int, pose_seed: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([0x5BD, seed, 0x905E, pose_seed, 5]))


def unposed_indices(Xh, Yh, hand_centre, rotation: float, spacing: float, y0: int, x0: int):
    """Fractional (y, x) indices, in the unposed scan's rendered box, of hand positions (Xh, Yh);
    ``rotation`` is the unposed in-plane rotation of the hand."""
    cxh, cyh = hand_centre
    c, s = math.cos(rotation), math.sin(rotation)
    X, Y = Xh - cxh, Yh - cyh
    return (cyh + s * X + c * Y) / spacing - y0, (cxh + c * X - s * Y) / spacing - x0


def sample_tile_at(tile: np.ndarray, offset: tuple, iz, fy, fx) -> np.ndarray:
    """A periodic tile at integer slices ``iz`` and fractional in-plane indices, nearest voxel (linear
    interpolation would smooth the tile and change which share of it lies below the trabecular
    threshold, i.e. the bone's density), wrapped."""
    oz, oy, ox = offset
    n = tile.shape[0]
    out = np.empty((len(iz),) + np.shape(fy), dtype=np.float32)
    for k, z in enumerate(iz):
        out[k] = ndimage.map_coordinates(tile[(z + oz) % n], [fy + oy, fx + ox], order=0, mode="grid-wrap")
    return out
