"""Separable linear interpolation onto a finer regular grid (cheaper than map_coordinates for smooth fields)."""
from __future__ import annotations

import numpy as np


def _weights(pos, n):
    i = np.clip(np.floor(pos).astype(np.int64), 0, max(n - 2, 0))
    w = np.clip(pos - i, 0.0, 1.0).astype(np.float32)
    return i, np.minimum(i + 1, n - 1), w


def upsample(coarse: np.ndarray, pos_y: np.ndarray, pos_x: np.ndarray) -> np.ndarray:
    """coarse (..., cy, cx) sampled at fractional coarse indices pos_y (rows) x pos_x (columns)."""
    cy, cx = coarse.shape[-2:]
    i0, i1, wy = _weights(np.asarray(pos_y, float), cy)
    tmp = coarse[..., i0, :] * (1 - wy)[:, None] + coarse[..., i1, :] * wy[:, None]
    j0, j1, wx = _weights(np.asarray(pos_x, float), cx)
    return (tmp[..., j0] * (1 - wx) + tmp[..., j1] * wx).astype(np.float32)
