"""Bones of the independent family: implicit surfaces swept along a curved axis.

A bone is a generalised cylinder. Its axis starts at the articular end (s = 0) and runs into the
bone along unit vector ``axes[0]``; ``axes[1]`` and ``axes[2]`` span the cross-section (v palmar,
w ulnar, for a right hand). The axis bows (centre line ``centre(s)``), and the cross-section at s
is the star-shaped curve rho = r(s, theta) around it, theta measured from +w towards +v. The
radius and the cortical thickness are tabulated on a fine (s, theta) grid, with the derivatives
of r, so that a point's implicit value F = rho - r(s, theta) and its gradient cost a few table
look-ups; F / |grad F| is the signed distance to first order (exact on the surface, within a few
per cent over the 2 mm a cortex spans). Boolean operations (the joint's cup, erosion pits) combine
these distances with min/max.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

N_THETA = 360
S_STEP_MM = 0.02
#: The articular ends are steep (dr/ds grows without bound at the tip), where F / |grad F| fails
#: away from the surface; there the signed distance comes from exact 2-D distance maps of the bone's
#: meridian sections (every 7.5 degrees, 0.05 mm grid), interpolated.
N_MERIDIAN = 48
MERIDIAN_STEP_MM = 0.05
MERIDIAN_BEYOND_MM = 3.0


@dataclass
class SweptBone:
    name: str
    origin: np.ndarray  # (3,) hand-frame (z, y, x) mm of the axis at s = 0
    axes: np.ndarray  # (3, 3) rows: s, v, w unit vectors in the hand frame
    tables: np.ndarray  # (n_s, N_THETA, 4) float32: r, dr/ds, dr/dtheta, cortical thickness
    centre: np.ndarray  # (n_s, 4) float32: v_c, w_c, dv_c/ds, dw_c/ds
    cortical_density: float  # mg HA/cm3 of cortical bone tissue (before partial volume)
    marrow_hu: float
    texture: object | None = None  # a CellularTexture, or None (then the marrow is uniform)
    design: dict = field(default_factory=dict)
    waves: np.ndarray | None = None  # (n, 4): wave vector (s, v, w) rad/mm and phase of the endosteal roughness
    roughness: float = 0.0
    _meridian: tuple | None = None  # (maps (N_MERIDIAN + 1, n_s, n_rho), s_end), made when first needed

    @property
    def meridian(self) -> np.ndarray:
        if self._meridian is None:
            self._meridian = meridian_maps(self.tables)
        return self._meridian[0]

    @property
    def meridian_s_end(self) -> float:
        """The maps hold s in [-MERIDIAN_BEYOND_MM, meridian_s_end)."""
        self.meridian  # noqa: B018 (makes the maps)
        return self._meridian[1]

    def endosteal_factor(self, loc: np.ndarray) -> np.ndarray:
        """1 + roughness * (a smooth pattern in [-1, 1]) at bone coordinates (..., 3)."""
        if self.waves is None or self.roughness == 0:
            return np.ones(loc.shape[:-1], dtype=np.float32)
        pattern = np.zeros(loc.shape[:-1], dtype=np.float32)
        for ks, kv, kw, phase in self.waves:
            pattern += np.cos(loc[..., 0] * ks + loc[..., 1] * kv + loc[..., 2] * kw + phase)
        return 1.0 + np.float32(self.roughness / np.sqrt(len(self.waves) / 2.0)) * np.clip(pattern, -2, 2) / 2

    @property
    def s_max(self) -> float:
        return (self.tables.shape[0] - 1) * S_STEP_MM

    def radius_bound(self) -> float:
        return float(self.tables[..., 0].max() + np.abs(self.centre[:, :2]).max())

    def local(self, q: np.ndarray) -> np.ndarray:
        """Hand-frame points (..., 3) to bone coordinates (..., 3): s, v, w."""
        return (q - self.origin.astype(np.float32)) @ self.axes.T.astype(np.float32)

    def evaluate(self, loc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(signed distance mm, cortical thickness mm, theta) at bone coordinates (..., 3)."""
        s, v, w = loc[..., 0], loc[..., 1], loc[..., 2]
        fs = np.clip(s / np.float32(S_STEP_MM), 0.0, self.tables.shape[0] - 1.001).astype(np.float32)
        i0 = fs.astype(np.int32)
        a = (fs - i0)[..., None]
        c = self.centre[i0] * (1 - a) + self.centre[i0 + 1] * a
        uv = v - c[..., 0]
        uw = w - c[..., 1]
        rho = np.maximum(np.hypot(uv, uw), np.float32(1e-4))
        theta = np.arctan2(uv, uw)
        ft = (theta + np.float32(np.pi)) * np.float32(N_THETA / (2 * np.pi))
        j0 = np.floor(ft).astype(np.int32)
        b = (ft - j0)[..., None]
        j0 %= N_THETA
        j1 = (j0 + 1) % N_THETA
        t = self.tables
        vals = (t[i0, j0] * (1 - b) + t[i0, j1] * b) * (1 - a) + (t[i0 + 1, j0] * (1 - b) + t[i0 + 1, j1] * b) * a
        r, r_s, r_t, cortex = vals[..., 0], vals[..., 1], vals[..., 2], vals[..., 3]
        beyond = s > self.s_max
        r_s = np.where(beyond | (s < 0), np.float32(0), r_s)
        f_tube = rho - r
        # gradient of F in (s, v, w); theta = atan2(uv, uw), rho = |(uv, uw)|
        inv = 1.0 / rho
        g_v = uv * inv - r_t * uw * inv * inv
        g_w = uw * inv + r_t * uv * inv * inv
        dvc, dwc = c[..., 2], c[..., 3]
        g_s = -(uv * dvc + uw * dwc) * inv - r_s - r_t * (-uw * dvc + uv * dwc) * inv * inv
        d_tube = f_tube / np.sqrt(g_s * g_s + g_v * g_v + g_w * g_w)
        # Beyond the articular end the solid stops (the dome closes at s = 0).
        distance = np.maximum(d_tube, -s)
        near_end = s < self.meridian_s_end
        if near_end.any():
            distance[near_end] = self._meridian_distance(s[near_end], rho[near_end], theta[near_end])
        return distance.astype(np.float32), cortex.astype(np.float32), theta

    def _meridian_distance(self, s, rho, theta):
        table = self.meridian
        n_rho = table.shape[2]
        fj = (theta + np.float32(np.pi)) * np.float32(N_MERIDIAN / (2 * np.pi))
        fs = (s + np.float32(MERIDIAN_BEYOND_MM)) / np.float32(MERIDIAN_STEP_MM)
        fr = rho / np.float32(MERIDIAN_STEP_MM)
        from scipy import ndimage

        d = ndimage.map_coordinates(table, [fj, fs, np.minimum(fr, n_rho - 1)], order=1, mode="nearest")
        # outside the maps the point is far from the bone: a lower bound of its distance is enough
        r_max = float(self.tables[..., 0].max())
        far = (fr > n_rho - 1) | (fs < 0)
        return np.where(far, np.maximum(np.maximum(rho - r_max, -s), MERIDIAN_BEYOND_MM), d).astype(np.float32)



def meridian_maps(tables: np.ndarray) -> tuple[np.ndarray, float]:
    """Signed distance maps (mm) of the meridian sections through the axis, where the end is steep."""
    from scipy import ndimage

    r = tables[..., 0]
    steep = np.abs(tables[..., 1]).max(axis=1) > 1.0
    last_steep = int(np.flatnonzero(steep).max()) if steep.any() else 0
    s_end = min((last_steep + 1) * S_STEP_MM + 1.0, (r.shape[0] - 1) * S_STEP_MM)
    stride = int(round(MERIDIAN_STEP_MM / S_STEP_MM))
    rows = np.arange(0, int(s_end / S_STEP_MM) + 1, stride)
    n_before = int(round(MERIDIAN_BEYOND_MM / MERIDIAN_STEP_MM))
    r_reach = float(r.max()) + MERIDIAN_BEYOND_MM
    n_rho = int(np.ceil(r_reach / MERIDIAN_STEP_MM)) + 1
    rho = np.arange(n_rho) * MERIDIAN_STEP_MM
    half = N_MERIDIAN // 2
    out = np.empty((N_MERIDIAN + 1, n_before + rows.size, n_rho), dtype=np.float32)
    for j in range(half):
        profiles = []
        for jj in (j, j + half):  # the two halves of one plane through the axis
            column = jj * (N_THETA // N_MERIDIAN)
            profile = np.concatenate([np.full(n_before, -1.0), r[rows, column]])
            profiles.append(rho[None, :] <= profile[:, None])
        plane = np.concatenate([profiles[1][:, :0:-1], profiles[0]], axis=1)  # rho' from -reach to +reach
        inside = ndimage.distance_transform_edt(plane, sampling=MERIDIAN_STEP_MM)
        outside = ndimage.distance_transform_edt(~plane, sampling=MERIDIAN_STEP_MM)
        signed = np.where(plane, 0.5 * MERIDIAN_STEP_MM - inside, outside - 0.5 * MERIDIAN_STEP_MM)
        out[j] = signed[:, n_rho - 1:]
        out[j + half] = signed[:, n_rho - 1::-1]
    out[N_MERIDIAN] = out[0]
    return out, float(rows[-1] * S_STEP_MM)


def build_tables(radius_fn, cortex_fn, s_max: float) -> np.ndarray:
    """Tabulate r(s, theta) and the cortical thickness with r's derivatives."""
    s = np.arange(0.0, s_max + S_STEP_MM / 2, S_STEP_MM)[:, None]
    theta = (np.arange(N_THETA) * (2 * np.pi / N_THETA) - np.pi)[None, :]
    r = np.broadcast_to(radius_fn(s, theta), (s.shape[0], N_THETA))
    r_s = np.gradient(r, S_STEP_MM, axis=0)
    r_t = (np.roll(r, -1, axis=1) - np.roll(r, 1, axis=1)) / (2 * 2 * np.pi / N_THETA)
    cortex = np.broadcast_to(cortex_fn(s, theta), r.shape)
    return np.stack([r, r_s, r_t, np.minimum(cortex, r)], axis=-1).astype(np.float32)


def centre_table(s_max: float, v_fn, w_fn) -> np.ndarray:
    s = np.arange(0.0, s_max + S_STEP_MM / 2, S_STEP_MM)
    v, w = v_fn(s), w_fn(s)
    return np.stack([v, w, np.gradient(v, S_STEP_MM), np.gradient(w, S_STEP_MM)], axis=-1).astype(np.float32)


def frame(direction, roll: float = 0.0) -> np.ndarray:
    """Orthonormal rows (s, v, w): s along ``direction`` (z, y, x); v towards +y (palmar), w towards +x."""
    s = np.asarray(direction, dtype=np.float64)
    s = s / np.linalg.norm(s)
    v = np.array([0.0, 1.0, 0.0]) - s * s[1]
    v /= np.linalg.norm(v)
    w = np.cross(s, v)
    if w[2] < 0:
        w = -w
    c, si = np.cos(roll), np.sin(roll)
    return np.stack([s, c * v + si * w, -si * v + c * w])


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3 - 2 * x)


def bump(theta, centre: float, width: float):
    """A smooth angular bump (1 at ``centre``), periodic in theta."""
    return np.exp(-(1 - np.cos(theta - centre)) / (width * width))


@dataclass(frozen=True)
class Pit:
    """An erosion: an ellipsoid (semi-axes along the surface normal and two tangents) with a rough wall."""

    centre: tuple[float, float, float]  # hand frame mm
    axes: tuple[tuple[float, float, float], ...]  # rows: normal, tangent 1, tangent 2 (hand frame)
    semi_axes: tuple[float, float, float]  # mm
    roughness: tuple[tuple[float, float, float, float, float], ...]  # (kz, ky, kx, phase, amplitude mm)

    def distance(self, q: np.ndarray) -> np.ndarray:
        """Approximate signed distance (mm, negative inside) at hand-frame points (..., 3)."""
        rel = (q - np.asarray(self.centre, dtype=np.float32)) @ np.asarray(self.axes, dtype=np.float32).T
        semi = np.asarray(self.semi_axes, dtype=np.float32)
        k0 = np.sqrt(((rel / semi) ** 2).sum(-1))
        k1 = np.sqrt(((rel / semi ** 2) ** 2).sum(-1))
        d = k0 * (k0 - 1.0) / np.maximum(k1, 1e-6)
        for kz, ky, kx, phase, amp in self.roughness:
            d = d + amp * np.cos(q[..., 0] * kz + q[..., 1] * ky + q[..., 2] * kx + phase)
        return d.astype(np.float32)
