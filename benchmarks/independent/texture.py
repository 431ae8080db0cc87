"""Trabecular bone as a cellular (Voronoi) network of plates and rods.

Seeds on a jittered lattice fill a bone's marrow space in the bone's own coordinates, stretched
along its axis (cells elongated along the bone, as trabeculae align with the load). A plate is
the wall between two neighbouring cells, kept for a random share of the cell pairs (the rest are
perforated away); a rod runs along the edge where three cells meet. A point's bone fraction comes
from its distance to the nearest wall and edge, with a linear ramp one voxel wide (the partial
volume of a voxel straddling a trabecula). Trabeculae thicken towards the endosteal surface and
the subchondral plate. Because the texture is a function of the bone's coordinates, a repeat scan
in another pose sees the same trabeculae.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
from scipy.spatial import cKDTree


@dataclass(frozen=True)
class TextureParams:
    cell_mm: float  # lattice spacing of the cell seeds (about the trabecular separation plus thickness)
    elongation: float  # cells this much longer along the bone axis
    plate_keep: float  # share of cell walls that are (unperforated) plates: 0 rod-like .. 1 plate-like
    rod_keep: float  # share of cell edges that carry a rod
    plate_mm: float  # plate thickness
    rod_mm: float  # rod diameter
    thickening: float  # relative extra thickness next to the endosteal surface
    tissue_density: float  # mg HA/cm3 of the trabecular tissue

    def to_dict(self) -> dict:
        return asdict(self)


def draw_texture(rng: np.random.Generator, bone_density_sd: float) -> TextureParams:
    """Plate- to rod-like, fine to coarse; ``bone_density_sd`` (a z-score of the person's bone density)
    thickens and keeps more trabeculae in denser bones."""
    plate_keep = float(np.clip(rng.uniform(0.1, 0.6) + 0.08 * bone_density_sd, 0.05, 0.85))
    thick = 1 + 0.1 * bone_density_sd
    return TextureParams(
        cell_mm=float(rng.uniform(0.55, 0.9)),
        elongation=float(rng.uniform(1.05, 1.45)),
        plate_keep=plate_keep,
        rod_keep=float(np.clip(rng.uniform(0.3, 0.7) + 0.05 * bone_density_sd, 0.2, 0.85)),
        plate_mm=float(np.clip(rng.uniform(0.06, 0.11) * thick, 0.04, 0.16)),
        rod_mm=float(np.clip(rng.uniform(0.10, 0.17) * thick, 0.07, 0.22)),
        thickening=float(rng.uniform(0.1, 0.5)),
        tissue_density=float(rng.uniform(1000.0, 1150.0)),
    )


def _pair_hash(a: np.ndarray, b: np.ndarray, salt: int) -> np.ndarray:
    lo = np.minimum(a, b).astype(np.uint64)
    hi = np.maximum(a, b).astype(np.uint64)
    x = lo * np.uint64(0x9E3779B1) ^ hi * np.uint64(0x85EBCA77) ^ np.uint64(salt)
    x ^= x >> np.uint64(15)
    x *= np.uint64(0x2C1B3C6D)
    x ^= x >> np.uint64(12)
    return (x % np.uint64(1 << 20)).astype(np.float32) / np.float32(1 << 20)


class CellularTexture:
    def __init__(self, params: TextureParams, extent, seed: int):
        """``extent``: ((s0, s1), (v0, v1), (w0, w1)) in mm, the bone coordinates to fill."""
        self.params = params
        rng = np.random.default_rng(np.random.SeedSequence([seed, 4049]))
        step = params.cell_mm
        scale = np.array([1.0 / params.elongation, 1.0, 1.0])
        axes = [np.arange(lo * s - step, hi * s + step, step) for (lo, hi), s in zip(extent, scale)]
        grid = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
        self.seeds = grid + rng.uniform(-0.5, 0.5, grid.shape) * step
        self.scale = scale.astype(np.float32)
        self.tree = cKDTree(self.seeds)
        self.salt = int(rng.integers(1, 2 ** 31))

    def bone_fraction(self, loc: np.ndarray, depth_mm: np.ndarray, voxel_mm: float) -> np.ndarray:
        """Volume fraction of trabecular tissue at bone coordinates ``loc`` (N, 3); ``depth_mm`` is the
        distance below the endosteal surface (thicker trabeculae there)."""
        p = self.params
        x = loc * self.scale
        _, idx = self.tree.query(x, k=3, workers=2)
        c1, c2, c3 = (self.seeds[idx[:, i]] for i in range(3))

        def wall(c_a, c_b):
            # exact distance to the bisecting plane of seeds a (nearest) and b
            normal = c_b - c_a
            length = np.linalg.norm(normal, axis=1)
            return (((x - c_a) ** 2).sum(1) - ((x - c_b) ** 2).sum(1)) / (-2 * length)

        d12 = wall(c1, c2).astype(np.float32)
        d13 = wall(c1, c3).astype(np.float32)
        d_edge = np.hypot(d12, d13)
        gain = 1.0 + p.thickening * np.exp(-np.maximum(depth_mm, 0) / 0.5)
        ramp = np.float32(1.0 / voxel_mm)
        # each wall and each edge has its own fate: kept or perforated, and a thickness 0.6-1.4 times the mean
        wall_draw = _pair_hash(idx[:, 0], idx[:, 1], self.salt)
        plate_mm = p.plate_mm * gain * (0.6 + 0.8 * _pair_hash(idx[:, 0], idx[:, 1], self.salt ^ 0x1F3D))
        plate = np.clip(0.5 - (d12 - 0.5 * plate_mm) * ramp, 0, 1) * (wall_draw < p.plate_keep)
        edge_key = idx[:, 0].astype(np.uint64) * np.uint64(7919) + np.minimum(idx[:, 1], idx[:, 2]).astype(np.uint64)
        edge_far = np.maximum(idx[:, 1], idx[:, 2])
        rod_mm = p.rod_mm * gain * (0.6 + 0.8 * _pair_hash(edge_key, edge_far, self.salt ^ 0x2E1B))
        rod = np.clip(0.5 - (d_edge - 0.5 * rod_mm) * ramp, 0, 1)
        rod *= _pair_hash(edge_key, edge_far, self.salt ^ 0x5BD1) < p.rod_keep
        return np.maximum(plate, rod).astype(np.float32)
