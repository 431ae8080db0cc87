"""Radius and cortex functions of the independent family's bones (metacarpal heads, proximal
phalanx bases, the thumb's phalanx), drawn from anatomical ranges; see docs/independent-phantoms.md.

theta (radians) is measured in the cross-section from ulnar (+w, 0) towards palmar (+v, pi/2);
radial is +-pi and dorsal -pi/2 (for a right hand; a left hand is the mirror image of the whole).
"""
from __future__ import annotations

import numpy as np

from .shapes import SweptBone, bump, build_tables, centre_table, frame, smoothstep
from .texture import CellularTexture, draw_texture

PALMAR, DORSAL, RADIAL, ULNAR = np.pi / 2, -np.pi / 2, np.pi, 0.0


def _ellipse(theta, half_w, half_v):
    return half_w * half_v / np.sqrt((half_v * np.cos(theta)) ** 2 + (half_w * np.sin(theta)) ** 2)


def draw_metacarpal(rng: np.random.Generator, breadth: float, bone_z: float, shaft_breadth: float | None = None) -> dict:
    """Shape parameters of a metacarpal head, neck and shaft (mm)."""
    shaft = shaft_breadth if shaft_breadth is not None else breadth * rng.uniform(0.55, 0.65)
    dome = rng.uniform(4.5, 7.0) * breadth / 16.0
    return {
        "head_breadth": float(breadth),
        "head_depth": float(breadth * rng.uniform(0.82, 1.0)),
        "shaft_breadth": float(shaft),
        "shaft_depth": float(shaft * rng.uniform(0.9, 1.15)),
        "dome_mm": float(dome),
        "dome_power": float(rng.uniform(1.8, 2.5)),
        "dome_palmar_skew": float(rng.uniform(0.05, 0.25)),
        "body_mm": float(rng.uniform(1.0, 3.0)),
        "neck_mm": float(rng.uniform(4.0, 8.0)),
        "waist": float(rng.uniform(0.0, 0.05)),
        "condyle_amp": float(rng.uniform(0.04, 0.12)),
        "condyle_spread": float(rng.uniform(0.6, 0.9)),
        "condyle_width": float(rng.uniform(0.3, 0.5)),
        "fossa_amp": float(rng.uniform(0.02, 0.07)),
        "triangle_amp": float(rng.uniform(0.03, 0.09)),
        "asymmetry": float(rng.uniform(-0.06, 0.06)),
        "harmonics": [(int(k), float(rng.uniform(0, 0.02)), float(rng.uniform(0, 2 * np.pi)), float(rng.uniform(0, 0.02)),
                       float(rng.uniform(0, 2 * np.pi))) for k in (4, 5, 6)],
        "head_palmar_offset": float(rng.uniform(0.2, 1.4)),
        "bow_per_mm": float(rng.uniform(1 / 400, 1 / 150)),
        "side_bow_per_mm": float(rng.uniform(-1 / 500, 1 / 500)),
        "cortex_head_mm": float(np.clip(rng.uniform(0.2, 0.6) * (1 + 0.06 * bone_z), 0.2, 0.6)),
        "cortex_dome_factor": float(rng.uniform(0.9, 1.3)),
        "cortex_shaft_mm": float(np.clip(rng.uniform(0.6, 2.0) * (1 + 0.08 * bone_z), 0.6, 2.0)),
        "cortex_angular": float(rng.uniform(0.1, 0.3)),
    }


def metacarpal_functions(p: dict):
    dome, neck_start = p["dome_mm"], p["dome_mm"] + p["body_mm"]
    neck_end = neck_start + p["neck_mm"]

    def radius(s, theta):
        shaft_weight = smoothstep((s - neck_start) / p["neck_mm"])
        half_w = 0.5 * (p["head_breadth"] + (p["shaft_breadth"] - p["head_breadth"]) * shaft_weight)
        half_v = 0.5 * (p["head_depth"] + (p["shaft_depth"] - p["head_depth"]) * shaft_weight)
        waist = 1 - p["waist"] * np.sin(np.pi * np.clip((s - neck_start) / p["neck_mm"], 0, 1)) ** 2
        head_weight = 1 - shaft_weight
        shape = 1 + p["asymmetry"] * np.cos(theta)  # radial and ulnar halves differ
        shape = shape + head_weight * p["condyle_amp"] * (
            bump(theta, PALMAR - p["condyle_spread"], p["condyle_width"])
            + bump(theta, PALMAR + p["condyle_spread"], p["condyle_width"]))
        fossa_weight = np.exp(-((s - dome - 1.0) / 2.0) ** 2)
        shape = shape - fossa_weight * p["fossa_amp"] * (bump(theta, DORSAL + 1.1, 0.35) + bump(theta, DORSAL - 1.1, 0.35))
        shape = shape + shaft_weight * p["triangle_amp"] * np.cos(3 * (theta - PALMAR))
        for k, a_head, ph_head, a_shaft, ph_shaft in p["harmonics"]:
            shape = shape + head_weight * a_head * np.cos(k * theta + ph_head) + shaft_weight * a_shaft * np.cos(
                k * theta + ph_shaft)
        # the articular dome: reaches the full section at s = dome(theta), further on the palmar side
        dome_theta = dome * (1 + p["dome_palmar_skew"] * np.sin(theta))
        u = np.clip(s / dome_theta, 0, 1)
        m = p["dome_power"]
        dome_profile = (1 - (1 - u) ** m) ** (1 / m)
        return _ellipse(theta, half_w, half_v) * waist * shape * dome_profile

    def cortex(s, theta):
        shaft_weight = smoothstep((s - neck_start) / (p["neck_mm"] + 4.0))
        t = p["cortex_head_mm"] + (p["cortex_shaft_mm"] - p["cortex_head_mm"]) * shaft_weight
        t = t * (1 + shaft_weight * p["cortex_angular"] * np.abs(np.sin(theta)))
        on_dome = 1 - smoothstep((s - 0.7 * dome) / (0.5 * dome))
        return t * (1 + on_dome * (p["cortex_dome_factor"] - 1))

    def centre_v(s):
        return p["head_palmar_offset"] * (1 - smoothstep((s - neck_start) / p["neck_mm"])) - 0.5 * p["bow_per_mm"] * s ** 2

    def centre_w(s):
        return 0.5 * p["side_bow_per_mm"] * s ** 2

    return radius, cortex, centre_v, centre_w, neck_end


def draw_phalanx_base(rng: np.random.Generator, head_breadth: float) -> dict:
    breadth = head_breadth * rng.uniform(0.98, 1.12)
    return {
        "base_breadth": float(breadth),
        "base_depth": float(breadth * rng.uniform(0.62, 0.8)),
        "rim_mm": float(rng.uniform(1.2, 2.5)),
        "plateau_mm": float(rng.uniform(2.5, 5.0)),
        "taper_mm": float(rng.uniform(5.0, 8.0)),
        "shaft_ratio": float(rng.uniform(0.55, 0.7)),
        "tubercle_amp": float(rng.uniform(0.04, 0.1)),
        "palmar_flat": float(rng.uniform(0.03, 0.08)),
        "cortex_base_mm": float(rng.uniform(0.25, 0.5)),
        "cortex_shaft_mm": float(rng.uniform(0.6, 1.2)),
    }


def phalanx_functions(p: dict):
    def radius(s, theta):
        rise = np.clip(s / p["rim_mm"], 0, 1)
        rim = np.sqrt(1 - (1 - rise) ** 2)
        taper = smoothstep((s - p["plateau_mm"]) / p["taper_mm"])
        scale = 1 - (1 - p["shaft_ratio"]) * taper
        shape = 1 + (1 - taper) * p["tubercle_amp"] * (bump(theta, PALMAR - 1.0, 0.35) + bump(theta, PALMAR + 1.0, 0.35))
        shape = shape - p["palmar_flat"] * bump(theta, PALMAR, 0.5)
        return _ellipse(theta, 0.5 * p["base_breadth"], 0.5 * p["base_depth"]) * scale * shape * rim

    def cortex(s, theta):
        taper = smoothstep((s - p["plateau_mm"]) / p["taper_mm"])
        return (p["cortex_base_mm"] + (p["cortex_shaft_mm"] - p["cortex_base_mm"]) * taper) + 0 * theta

    return radius, cortex


def draw_thumb(rng: np.random.Generator) -> dict:
    breadth = rng.uniform(8.0, 11.0)
    return {
        "breadth": float(breadth),
        "depth": float(breadth * rng.uniform(0.7, 0.9)),
        "cortex_mm": float(rng.uniform(0.8, 1.4)),
        "harmonic": (float(rng.uniform(0, 0.05)), float(rng.uniform(0, 2 * np.pi))),
    }


def thumb_functions(p: dict):
    def radius(s, theta):
        wave = 1 + p["harmonic"][0] * np.cos(3 * theta + p["harmonic"][1])
        dome = np.sqrt(1 - (1 - np.clip(s / 3.0, 0, 1)) ** 2)  # its ends lie far outside the field
        return _ellipse(theta, 0.5 * p["breadth"], 0.5 * p["depth"]) * wave * dome * (1 + 0 * s)

    def cortex(s, theta):
        return p["cortex_mm"] * (1 + 0.2 * np.abs(np.sin(theta))) + 0 * s

    return radius, cortex


def make_bone(name: str, kind: str, params: dict, origin, direction, roll: float, s_max: float, densities: dict,
              texture_rng: np.random.Generator, bone_z: float, texture_seed: int) -> SweptBone:
    """A SweptBone with its tables and its trabecular texture (one per bone, in its own coordinates)."""
    if kind == "metacarpal":
        radius, cortex, cv, cw, _ = metacarpal_functions(params)
    elif kind == "phalanx":
        radius, cortex = phalanx_functions(params)
        cv = cw = lambda s: 0.0 * s  # noqa: E731
    else:
        radius, cortex = thumb_functions(params)
        cv = cw = lambda s: 0.0 * s  # noqa: E731
    tables = build_tables(radius, cortex, s_max)
    centre = centre_table(s_max, cv, cw)
    bone = SweptBone(name=name, origin=np.asarray(origin, dtype=np.float64), axes=frame(direction, roll),
                     tables=tables, centre=centre, cortical_density=densities["cortical"],
                     marrow_hu=densities["marrow_hu"], design={"kind": kind, **params})
    reach = bone.radius_bound() + 0.5
    texture_params = draw_texture(texture_rng, bone_z)
    bone.texture = CellularTexture(texture_params, ((0.0, s_max), (-reach, reach), (-reach, reach)), texture_seed)
    bone.design["texture"] = texture_params.to_dict()
    # an irregular (trabecularised) endosteal surface: the cortex thickness varies by up to +-roughness
    roughness = float(texture_rng.uniform(0.15, 0.35))
    k = texture_rng.normal(size=(4, 3)) / np.sqrt(3) * 2 * np.pi / texture_rng.uniform(0.8, 2.5, size=(4, 1))
    bone.waves = np.concatenate([k, texture_rng.uniform(0, 2 * np.pi, size=(4, 1))], axis=1).astype(np.float32)
    bone.roughness = roughness
    bone.design["endosteal_roughness"] = roughness
    return bone


def surface_points(bone: SweptBone, s_values: np.ndarray, n_theta: int = 90) -> np.ndarray:
    """Hand-frame points on the bone's surface at the given axial positions (for spacing checks)."""
    from .shapes import N_THETA, S_STEP_MM

    idx = np.clip(np.round(s_values / S_STEP_MM).astype(int), 0, bone.tables.shape[0] - 1)
    cols = np.arange(0, N_THETA, N_THETA // n_theta)
    theta = cols * (2 * np.pi / N_THETA) - np.pi
    r = bone.tables[idx][:, cols, 0]
    v = bone.centre[idx, 0][:, None] + r * np.sin(theta)[None, :]
    w = bone.centre[idx, 1][:, None] + r * np.cos(theta)[None, :]
    s = np.broadcast_to(s_values[:, None], r.shape)
    loc = np.stack([s, v, w], axis=-1).reshape(-1, 3)
    return loc @ bone.axes + bone.origin
