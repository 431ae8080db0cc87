"""One hand of the independent family: its bones, joints, erosions and soft tissue, drawn from a seed.

The hand frame (mm) has its origin at the tip of MC2's head; z runs proximally along MC2, y
towards the palm, x towards the ulnar side (a right hand). Everything here is a function of that
frame, so a repeat scan (another pose) sees the same hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .bones import DORSAL, PALMAR, RADIAL, ULNAR, draw_metacarpal, draw_phalanx_base, draw_thumb, make_bone, surface_points
from .shapes import N_THETA, S_STEP_MM, Pit, SweptBone

FINGERS = (2, 3, 4, 5)


@dataclass
class Joint:
    metacarpal: str
    phalanx: str
    gap_mm: float  # joint space (cartilage on both sides)


@dataclass
class Tendon:
    centre_yx: tuple[float, float]
    semi_yx: tuple[float, float]


@dataclass
class HandAnatomy:
    bones: dict[str, SweptBone]
    joints: list[Joint]
    pits: list[Pit]
    tendons: list[Tendon]
    outline: dict  # soft-tissue envelope (superellipse in y, x) and layer thicknesses
    thumb_axis: tuple[np.ndarray, np.ndarray, float] | None  # (point, direction, soft-tissue radius)
    hu: dict  # soft tissue Hounsfield units
    design: dict = field(default_factory=dict)

    @property
    def target(self) -> SweptBone:
        return self.bones["MC2"]


def _min_distance(points: np.ndarray, bone: SweptBone) -> float:
    d, _, _ = bone.evaluate(bone.local(points.astype(np.float32)))
    return float(d.min())


def draw_hand(seed: int, n_erosions: int, z_range: tuple[float, float], whole_hand: bool,
              visible_mm: float = 30.0) -> HandAnatomy:
    """The hand of ``seed``; bones within ``z_range`` (hand-frame mm, with margin) are built.

    Only MC2, MC3 and their phalanges are needed for a cropped field; ``whole_hand`` adds MC4, MC5,
    their phalanges and the thumb. The shared draws (everything of MC2 and MC3) do not depend on it.
    Erosions are placed within the first ``visible_mm`` of MC2 (the part the field shows).
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, 31]))
    bone_z = float(np.clip(rng.normal(), -2.2, 2.2))
    cortical = float(np.clip(980 + 50 * bone_z + rng.normal(0, 35), 850, 1150))
    marrow_hu = float(np.clip(-40 + 12 * bone_z + rng.normal(0, 22), -95, 15))
    hu = {
        "fat": float(rng.uniform(-115, -70)), "muscle": float(rng.uniform(30, 60)), "skin": float(rng.uniform(40, 90)),
        "tendon": float(rng.uniform(65, 110)), "cartilage": float(rng.uniform(85, 130)), "pannus": float(rng.uniform(40, 80)),
        "marbling": float(rng.uniform(0.05, 0.45)),
    }
    breadth2 = rng.uniform(14.0, 18.0)
    mc = {2: draw_metacarpal(rng, breadth2, bone_z, shaft_breadth=rng.uniform(8.0, 10.0))}
    mc[3] = draw_metacarpal(rng, breadth2 * rng.uniform(0.97, 1.1), bone_z)
    mc[4] = draw_metacarpal(rng, breadth2 * rng.uniform(0.82, 0.92), bone_z)
    mc[5] = draw_metacarpal(rng, breadth2 * rng.uniform(0.78, 0.9), bone_z)
    pp = {i: draw_phalanx_base(rng, mc[i]["head_breadth"]) for i in FINGERS}
    touching = rng.uniform() < 0.35
    gaps = {3: float(rng.uniform(0.15, 0.6) if touching else rng.uniform(0.6, 3.0)),
            4: float(rng.uniform(0.5, 3.5)), 5: float(rng.uniform(0.8, 4.0))}
    tip_z = {2: 0.0, 3: float(rng.uniform(-2.0, 1.0))}
    tip_z[4] = tip_z[3] + float(rng.uniform(1.5, 4.0))
    tip_z[5] = tip_z[4] + float(rng.uniform(2.0, 5.0))
    tip_y = {2: 0.0, 3: -float(rng.uniform(0.5, 2.5))}  # the transverse arch: MC3 highest dorsally
    tip_y[4] = tip_y[3] + float(rng.uniform(0.0, 2.5))
    tip_y[5] = tip_y[4] + float(rng.uniform(2.0, 6.0))
    convergence = {2: 0.0, 3: -float(rng.uniform(2, 8)), 4: -float(rng.uniform(6, 14)), 5: -float(rng.uniform(10, 20))}
    roll = {2: float(rng.uniform(-0.1, 0.1)), 3: float(rng.uniform(-0.17, 0.17)), 4: float(rng.uniform(-0.1, 0.25)),
            5: float(rng.uniform(0.15, 0.5))}
    joint_gap, cup, flexion = _draw_joints(seed)
    texture_seeds = {name: int(rng.integers(2 ** 31)) for name in ("MC2", "MC3", "MC4", "MC5", "PP2", "PP3", "PP4", "PP5", "T1")}
    density_jitter = {name: float(rng.normal(0, 15)) for name in texture_seeds}
    thumb = draw_thumb(rng)
    thumb_place = {"gap": float(rng.uniform(8.0, 20.0)), "palmar": float(rng.uniform(4.0, 12.0)),
                   "angle": float(np.radians(rng.uniform(25, 50))), "tilt": float(np.radians(rng.uniform(5, 25))),
                   "soft_extra": float(rng.uniform(5.0, 8.0)), "apart": bool(rng.uniform() < 0.3)}
    outline_rng = np.random.default_rng(np.random.SeedSequence([seed, 32]))
    pit_rng = np.random.default_rng(np.random.SeedSequence([seed, 33, n_erosions]))

    z_lo, z_hi = z_range
    fingers = FINGERS if whole_hand else (2, 3)
    bones: dict[str, SweptBone] = {}
    joints: list[Joint] = []
    x_tip = {2: 0.0}
    for i in fingers:
        m = mc[i]
        angle = np.radians(convergence[i])
        direction = np.array([np.cos(angle), 0.0, np.sin(angle)])
        s_max = max(4.0, (z_hi - tip_z[i]) / np.cos(angle) + 4.0)
        if i > 2:
            x_tip[i] = x_tip[i - 1] + 0.5 * (mc[i - 1]["head_breadth"] + m["head_breadth"]) + gaps[i]
        densities = {"cortical": cortical + density_jitter[f"MC{i}"], "marrow_hu": marrow_hu}
        tex_rng = np.random.default_rng(np.random.SeedSequence([seed, 40 + i]))
        bone = make_bone(f"MC{i}", "metacarpal", m, (tip_z[i], tip_y[i], x_tip[i]), direction, roll[i], s_max, densities,
                         tex_rng, bone_z, texture_seeds[f"MC{i}"])
        if i > 2:  # set the head-to-head gap exactly (the lobes make the nominal one approximate)
            previous = bones[f"MC{i - 1}"]
            s_check = np.arange(0.0, min(previous.s_max, 14.0), 0.25)
            target_points = surface_points(previous, s_check)
            for _ in range(4):
                shortfall = gaps[i] - _min_distance(target_points, bone)
                if abs(shortfall) < 0.01:
                    break
                bone.origin = bone.origin + np.array([0.0, 0.0, shortfall])
            x_tip[i] = float(bone.origin[2])
        bones[bone.name] = bone
        # the proximal phalanx: its base cupped around the head across the joint space
        axis_mc = bone.axes[0]
        tip = bone.origin
        flex = flexion[i]
        direction_pp = -axis_mc * np.cos(flex) + np.array([0.0, 1.0, 0.0]) * np.sin(flex)
        # its proximal end lies cup[i] behind the articular point, which faces the tip across the joint space
        base = tip + direction_pp * (joint_gap[i] - cup[i])
        pp_s_max = max(4.0, (base[0] - z_lo) / max(np.cos(flex), 0.5) + 4.0)
        densities = {"cortical": cortical + density_jitter[f"PP{i}"], "marrow_hu": marrow_hu}
        tex_rng = np.random.default_rng(np.random.SeedSequence([seed, 50 + i]))
        phalanx = make_bone(f"PP{i}", "phalanx", pp[i], base, direction_pp, roll[i], pp_s_max,
                            densities, tex_rng, bone_z, texture_seeds[f"PP{i}"])
        bones[phalanx.name] = phalanx
        joints.append(Joint(bone.name, phalanx.name, joint_gap[i]))

    thumb_axis = None
    if whole_hand:
        z_mid = 0.5 * (z_lo + z_hi)
        x_thumb = -(0.5 * mc[2]["head_breadth"] + thumb_place["gap"] + 0.5 * thumb["breadth"])
        a, t = thumb_place["angle"], thumb_place["tilt"]
        direction = np.array([-np.cos(a) * np.cos(t), np.sin(t), -np.sin(a) * np.cos(t)])
        point = np.array([z_mid, thumb_place["palmar"], x_thumb])
        densities = {"cortical": cortical + density_jitter["T1"], "marrow_hu": marrow_hu}
        tex_rng = np.random.default_rng(np.random.SeedSequence([seed, 60]))
        span = (z_hi - z_lo) / np.cos(a) + 20.0
        bones["T1"] = make_bone("T1", "thumb", thumb, point - direction * 0.5 * span, direction, 0.0, span, densities,
                                tex_rng, bone_z, texture_seeds["T1"])
        thumb_axis = (point, direction, 0.5 * thumb["breadth"] + thumb_place["soft_extra"])

    pits = _draw_pits(pit_rng, bones["MC2"], mc[2], n_erosions, visible_mm)
    tendons = [_tendons(outline_rng, bones[f"MC{i}"], mc[i]) for i in fingers]
    outline = _draw_outline(outline_rng, mc, x_tip, tip_y)
    design = {
        "bone_density_z": bone_z, "cortical_density": cortical, "marrow_hu": marrow_hu, "hu": hu,
        "metacarpals": {f"MC{i}": mc[i] for i in fingers}, "phalanges": {f"PP{i}": pp[i] for i in fingers},
        "mc_tip_zyx": {f"MC{i}": [float(v) for v in bones[f"MC{i}"].origin] for i in fingers},
        "neighbour_gap_mm": {f"MC{i - 1}-MC{i}": gaps[i] for i in fingers if i > 2},
        "joint_space_mm": {f"MC{i}": joint_gap[i] for i in fingers},
        "thumb": {**thumb, **thumb_place} if whole_hand else None,
        "textures": {name: b.design["texture"] for name, b in bones.items()},
        "erosions": [{"centre_zyx": list(p.centre), "semi_axes_mm": list(p.semi_axes)} for p in pits],
        "outline": outline,
    }
    return HandAnatomy(bones=bones, joints=joints, pits=pits, tendons=[t for pair in tendons for t in pair],
                       outline=outline, thumb_axis=thumb_axis, hu=hu, design=design)


def _draw_joints(seed: int):
    """Joint space (0.8-2.2 mm, narrow ones included), cup depth and flexion of each MCP joint."""
    rng = np.random.default_rng(np.random.SeedSequence([seed, 34]))
    joint_gap = {i: float(rng.uniform(0.8, 2.2)) for i in FINGERS}
    cup = {i: float(rng.uniform(1.0, 2.5)) for i in FINGERS}
    flexion = {i: float(np.radians(rng.uniform(0, 20))) for i in FINGERS}
    return joint_gap, cup, flexion


def joint_space_mm(seed: int) -> float:
    """MC2's joint space in the hand of ``seed`` (the field of view is placed from it)."""
    return _draw_joints(seed)[0][2]


def _draw_pits(rng: np.random.Generator, mc2: SweptBone, params: dict, n: int, visible_mm: float) -> list[Pit]:
    """Erosions at MC2's bare areas near the joint margin (mostly radial, then dorsal/palmar, some ulnar)."""
    pits: list[Pit] = []
    sites = [RADIAL, RADIAL + 0.6, RADIAL - 0.6, DORSAL, PALMAR + 0.5, ULNAR - 0.5]
    weights = np.array([0.3, 0.15, 0.15, 0.15, 0.15, 0.1])
    used: list[tuple[float, float]] = []
    while len(pits) < n:
        theta = float(rng.choice(sites, p=weights) + rng.normal(0, 0.2))
        dome_here = params["dome_mm"] * (1 + params["dome_palmar_skew"] * np.sin(theta))
        low, high = 0.6 * dome_here, min(dome_here + 2.5, visible_mm - 0.8)
        s = float(rng.uniform(low, high) if high > low else rng.uniform(0.3, 0.9) * max(visible_mm, 1.0))
        if any(abs(np.angle(np.exp(1j * (theta - t)))) < 0.7 and abs(s - s0) < 3.0 for t, s0 in used):
            continue
        used.append((theta, s))
        i = int(round(s / S_STEP_MM))
        j = int(round((theta + np.pi) * N_THETA / (2 * np.pi))) % N_THETA
        r, r_s = float(mc2.tables[i, j, 0]), float(mc2.tables[i, j, 1])
        vc, wc = float(mc2.centre[i, 0]), float(mc2.centre[i, 1])
        surface_local = np.array([s, vc + r * np.sin(theta), wc + r * np.cos(theta)])
        normal_local = np.array([-r_s, np.sin(theta), np.cos(theta)])
        normal_local /= np.linalg.norm(normal_local)
        normal = normal_local @ mc2.axes
        helper = np.array([1.0, 0.0, 0.0]) if abs(normal[0]) < 0.9 else np.array([0.0, 1.0, 0.0])
        t1 = np.cross(normal, helper)
        t1 /= np.linalg.norm(t1)
        t2 = np.cross(normal, t1)
        depth = float(rng.uniform(0.6, 1.6))
        centre = surface_local @ mc2.axes + mc2.origin + normal * depth * rng.uniform(0.1, 0.45)
        rough = tuple((*(rng.normal(size=3) / np.sqrt(3) * 2 * np.pi / rng.uniform(0.8, 2.0)), float(rng.uniform(0, 2 * np.pi)),
                       float(rng.uniform(0.04, 0.12))) for _ in range(3))
        pits.append(Pit(centre=tuple(float(c) for c in centre), axes=(tuple(normal), tuple(t1), tuple(t2)),
                        semi_axes=(depth, float(rng.uniform(0.6, 2.2)), float(rng.uniform(0.6, 2.2))),
                        roughness=tuple(tuple(float(v) for v in r) for r in rough)))
    return pits


def _tendons(rng: np.random.Generator, bone: SweptBone, params: dict) -> tuple[Tendon, Tendon]:
    y, x = float(bone.origin[1]), float(bone.origin[2])
    half_depth = 0.5 * params["head_depth"]
    ext_half = (float(rng.uniform(0.5, 0.8)), float(rng.uniform(2.0, 3.5)))
    flex_half = (float(rng.uniform(2.5, 4.0)), float(rng.uniform(3.0, 4.5)))
    extensor = Tendon((y - half_depth - rng.uniform(0.8, 2.0) - ext_half[0], x + rng.uniform(-1, 1)), ext_half)
    flexor = Tendon((y + half_depth + rng.uniform(1.5, 4.0) + flex_half[0], x + rng.uniform(-1, 1)), flex_half)
    return extensor, flexor


def _draw_outline(rng: np.random.Generator, mc: dict, x_tip: dict, tip_y: dict) -> dict:
    """The hand's cross-section: a superellipse around the metacarpals, flatter dorsally."""
    radial = -(0.5 * mc[2]["head_breadth"] + rng.uniform(7.0, 12.0))
    # the ulnar edge is placed from nominal MC positions so that it does not depend on the field drawn
    nominal_ulnar = 0.5 * mc[2]["head_breadth"] + mc[3]["head_breadth"] + mc[4]["head_breadth"] + 0.5 * mc[5]["head_breadth"] + 6.0
    ulnar = nominal_ulnar + 0.5 * mc[5]["head_breadth"] + rng.uniform(7.0, 12.0)
    dorsal = -(0.5 * mc[2]["head_depth"] + rng.uniform(4.0, 8.0))
    palmar = 0.5 * mc[2]["head_depth"] + rng.uniform(10.0, 18.0)
    return {
        "x_radial": float(radial), "x_ulnar": float(ulnar), "y_dorsal": float(dorsal), "y_palmar": float(palmar),
        "power": float(rng.uniform(2.2, 3.5)), "skin_mm": float(rng.uniform(0.9, 1.8)),
        "fat_dorsal_mm": float(rng.uniform(1.0, 3.0)), "fat_palmar_mm": float(rng.uniform(3.0, 8.0)),
        "marbling_waves": [(*(rng.normal(size=3) * 2 * np.pi / rng.uniform(3.0, 8.0)).tolist(), float(rng.uniform(0, 2 * np.pi)))
                           for _ in range(4)],
    }
