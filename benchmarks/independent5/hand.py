"""The hand of one seed: four metacarpals in an arched row with their phalanx bases, the thumb, and the
soft tissue (skin, fat, muscle, tendons) around them, all in the right-hand frame of ``anatomy``."""
from __future__ import annotations

import numpy as np

from . import anatomy as an

F32 = np.float32


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def draw_hand(seed: int) -> dict:
    """Every anatomical parameter of the hand of ``seed`` (JSON-able)."""
    rng = np.random.default_rng([seed, 5005])
    touch23 = seed % 3 == 0  # a third of hands: MC3 close enough to MC2 to touch through the blur
    narrow = (seed // 3) % 3 == 0  # a third: a narrow MC2 joint space
    thumb = seed % 5 != 0  # most hands: the thumb radial-palmar of MC2
    w2, d2 = _u(rng, 13.0, 15.0), _u(rng, 12.0, 14.0)
    widths = [w2, w2 * _u(rng, 1.0, 1.08)]
    depths = [d2, d2 * _u(rng, 1.0, 1.08)]
    widths += [widths[1] * _u(rng, 0.8, 0.88), widths[1] * _u(rng, 0.74, 0.84)]
    depths += [depths[1] * _u(rng, 0.82, 0.9), depths[1] * _u(rng, 0.76, 0.86)]
    gaps = [_u(rng, 0.05, 0.35) if touch23 else _u(rng, 0.8, 3.0), _u(rng, 1.0, 3.5), _u(rng, 1.0, 3.5)]
    z2 = _u(rng, 0.6, 1.8)
    z3 = z2 - _u(rng, 0.2, 1.2)
    z4 = z3 + _u(rng, 1.5, 3.5)
    z5 = z4 + _u(rng, 1.5, 3.5)
    joint = [_u(rng, 0.4, 0.8) if narrow else _u(rng, 1.0, 1.8)] + [_u(rng, 0.8, 1.8) for _ in range(3)]
    slopes = [_u(rng, 0.02, 0.08), _u(rng, -0.02, 0.03), _u(rng, -0.05, 0.0), _u(rng, -0.08, -0.02)]
    bvtv = _u(rng, 0.16, 0.25)
    tissue = _u(rng, 740.0, 880.0)
    rho_c = _u(rng, 850.0, 1100.0)
    head_c = _u(rng, 0.2, 0.6)
    shaft_c = _u(rng, 0.6, 2.0)
    # the row: MC2's head centre at the origin, the others ulnar of it along an arch bending palmar
    xs = [0.0]
    bones = []
    for i in range(4):
        bone = an.draw_metacarpal(
            rng, f"MC{i + 2}", 0.0, 0.0, widths[i], depths[i], [z2, z3, z4, z5][i], joint[i], slopes[i],
            bvtv * (1.0 if i < 2 else _u(rng, 0.9, 1.1)), rho_c * (1.0 if i == 0 else _u(rng, 0.95, 1.05)),
            tissue, head_c if i == 0 else _u(rng, 0.25, 0.55), shaft_c if i == 0 else _u(rng, 0.8, 1.8))
        bones.append(bone)
    for i in range(1, 4):
        xs.append(xs[-1] + bones[i - 1]["a_u"] + gaps[i - 1] + bones[i]["a_r"])
    arch = _u(rng, 2.0, 5.0) / (xs[3] - xs[1]) ** 2
    ys = [arch * (x - xs[1]) ** 2 for x in xs]
    ys = [y - ys[0] for y in ys]
    for bone, x, y in zip(bones, xs, ys):
        bone["cx"], bone["cy"] = x, y
    hand = {"seed": seed, "touch23": touch23, "narrow_joint": narrow, "has_thumb": thumb,
            "gaps_mm": gaps, "arch_mm": ys[3] - ys[1], "bones": bones,
            "mc2_width_mm": w2, "mc2_depth_mm": d2, "mc2_head_cortex_mm": head_c,
            "mc2_shaft_cortex_mm": shaft_c, "mc2_joint_gap_mm": joint[0], "bvtv": bvtv,
            "tissue_mg_ha_cm3": tissue, "cortex_mg_ha_cm3": rho_c}
    b2 = bones[0]
    # the thumb: an oblique tube radial-palmar of MC2 (drawn even when absent: the draws stay aligned)
    alpha, beta = np.deg2rad(_u(rng, 15, 35)), np.deg2rad(_u(rng, -20, 40))
    d = np.array([np.sin(alpha) * np.cos(beta), np.sin(alpha) * np.sin(beta), np.cos(alpha)])
    ra = _u(rng, 4.0, 5.3)
    hand["thumb"] = {
        "present": thumb, "direction": d.tolist(), "radii": [ra, ra * _u(rng, 0.8, 0.95)], "p": _u(rng, 2.0, 2.6),
        "p0": [-(b2["a_r"] + _u(rng, 6.0, 11.0) + ra), b2["b_p"] * _u(rng, 0.5, 1.1), 5.0],
        "cortex_mm": _u(rng, 0.9, 1.5), "bulge": _u(rng, 0.0, 0.25), "bulge_at": _u(rng, -6, 6),
        "rho_cortex": rho_c * _u(rng, 0.95, 1.03), "texture": an.draw_texture(rng, bvtv * 0.8, tissue),
        "soft_mm": _u(rng, 3.5, 5.5),
    }
    # soft tissue
    left = min(b["cx"] - b["a_r"] for b in bones)
    right = max(b["cx"] + b["a_u"] for b in bones)
    dors = min(b["cy"] - b["b_d"] for b in bones)
    palm = max(b["cy"] + b["b_p"] for b in bones)
    xc = 0.5 * (left + right)
    yc = 0.5 * (dors + palm)
    hand["soft"] = {
        "centre": [xc, yc],
        "semi": [xc - left + _u(rng, 3.0, 6.0), right - xc + _u(rng, 3.0, 5.0),
                 yc - dors + _u(rng, 3.5, 6.0), palm - yc + _u(rng, 11.0, 17.0)],
        "p": _u(rng, 2.6, 3.6), "phi_deg": _u(rng, -4, 4), "skin_mm": _u(rng, 1.1, 1.8),
        "fat": _u(rng, -110, -70), "muscle": _u(rng, 20, 60), "tendon": _u(rng, 80, 130),
        "skin": _u(rng, 40, 80), "marrow": _u(rng, -40, 20),
        "tendon_jitter": [[_u(rng, -0.8, 0.8), _u(rng, -0.4, 0.4), _u(rng, 0.8, 1.2)] for _ in range(8)],
    }
    hand["base_rotation_deg"] = _u(rng, -10, 10)
    hand["crop"] = {"width_mm": _u(rng, 30.0, 45.0), "height_mm": _u(rng, 30.0, 38.0),
                    "radial_margin_mm": _u(rng, 8.5, 12.0), "y_offset_mm": _u(rng, -2.5, 2.5)}
    hand["whole_margin_mm"] = _u(rng, 2.0, 5.0)
    return hand


def soft_items(hand) -> list[tuple]:
    """Muscles and tendons as (density, cx, cy, a, b, p) ellipses in the hand frame (z-invariant)."""
    s = hand["soft"]
    items = []
    bones = hand["bones"]
    for i, b in enumerate(bones):
        j = s["tendon_jitter"][i]
        items.append((s["tendon"], b["cx"] + j[0], b["cy"] - b["b_d"] - 1.1, 2.0 * j[2], 0.65, 2.0))  # extensor
        j = s["tendon_jitter"][4 + i]
        fy = b["cy"] + b["b_p"] + 3.2 + j[1]
        items.append((s["muscle"] + 25, b["cx"] + j[0], fy, 3.6 * j[2], 2.9, 2.0))  # flexor sheath
        items.append((s["tendon"], b["cx"] + j[0], fy, 2.5 * j[2], 1.9, 2.0))  # flexor tendons
        # lumbrical, radial-palmar of the head
        items.append((s["muscle"], b["cx"] - b["a_r"] - 0.6, b["cy"] + 0.55 * b["b_p"] + 2.5, 1.6, 2.6, 2.0))
    for b0, b1 in zip(bones[:-1], bones[1:]):  # interossei between the heads, palmar
        x = 0.5 * (b0["cx"] + b0["a_u"] + b1["cx"] - b1["a_r"])
        items.append((s["muscle"], x, 0.5 * (b0["cy"] + b1["cy"]) + 2.0, 2.2, 4.5, 2.2))
    b2, b5 = bones[0], bones[3]
    items.append((s["muscle"], b2["cx"] - b2["a_r"] - 4.0, b2["cy"] + 1.0, 4.0, 6.0, 2.2))  # first dorsal interosseous
    items.append((s["muscle"], b5["cx"] + b5["a_u"] + 1.0, b5["cy"] + b5["b_p"] + 2.0, 3.0, 4.5, 2.0))  # hypothenar
    return items


def _signed_dist(pw, scale_mm):
    """A distance-like value (mm) from a superellipse's normalised value (negative inside)."""
    r = np.maximum(pw, F32(1e-6))
    return (r - 1) * F32(scale_mm) * F32(0.5)


def item_box(item, margin: float) -> tuple[list, list]:
    """Hand-frame (x, y) box of a soft-tissue ellipse."""
    _, ex, ey, ea, eb, _ = item
    return [ex - ea - margin, ey - eb - margin], [ex + ea + margin, ey + eb + margin]


def soft_tissue(hand, x, y, z, voxel: float, boxes=None) -> tuple[np.ndarray, np.ndarray]:
    """Density (mg HA/cm3) of the soft tissue at hand-frame points, and the fraction of each point inside
    the hand (the rest is air). ``boxes``: per soft item a (j0, j1, i0, i1) window of the 2-D point arrays
    outside which the item is known to be absent (None: evaluate everywhere)."""
    s = hand["soft"]
    cx, cy = s["centre"]
    u, v = an._local(x, y, F32(cx), F32(cy), np.deg2rad(F32(s["phi_deg"])))
    ar, au, bd, bp = s["semi"]
    pw = an._quad_pow(u, v, ar, au, bd, bp, s["p"], s["p"]) ** F32(1.0 / s["p"])
    # distance inside the outline along the ray from the centre (good for these convex outlines)
    rad = np.sqrt(u * u + v * v)
    dist = rad * (F32(1.0) / np.maximum(pw, F32(1e-4)) - F32(1.0))  # > 0 inside
    th = hand["thumb"]
    if th["present"]:
        tcx, tcy = an.thumb_centre(th, z)
        d = np.asarray(th["direction"])
        # the thumb's soft tissue: its bone section (elongated by the obliquity) plus a margin
        ra = th["radii"][0] + th["soft_mm"]
        du, dv = x - F32(tcx), y - F32(tcy)
        along = (du * F32(d[0]) + dv * F32(d[1])) / F32(np.hypot(d[0], d[1]) + 1e-9)
        across2 = du * du + dv * dv - along * along
        stretch = F32(1.0 / max(d[2], 0.3))
        tr = np.sqrt(across2 + (along / stretch) ** 2)
        tdist = F32(ra) - tr
        # a soft web joins thumb and hand (union)
        dist = np.maximum(dist, tdist)
    frac = np.clip(F32(0.5) + dist / F32(voxel), 0.0, 1.0)
    dens = np.full(x.shape, F32(s["fat"]), dtype=F32)
    for n, (rho, ex, ey, ea, eb, ep) in enumerate(soft_items(hand)):
        if boxes is None:
            sub = (slice(None),) * x.ndim
        elif boxes[n] is None:
            continue
        else:
            j0, j1, i0, i1 = boxes[n]
            sub = (slice(j0, j1), slice(i0, i1))
        pw = an._ell_pow(x[sub], y[sub], F32(ex), F32(ey), F32(ea), F32(eb), ep)
        w = np.clip(F32(0.5) - (np.sqrt(pw) - F32(1.0)) * F32(min(ea, eb)) / F32(voxel), 0.0, 1.0)
        if w.any():
            dens[sub] += w * (F32(rho) - dens[sub])
    skin = np.clip(F32(0.5) + (F32(s["skin_mm"]) - dist) / F32(voxel), 0.0, 1.0)
    dens += skin * (F32(s["skin"]) - dens)
    return dens, frac


def soft_extent(hand, z_values) -> tuple[float, float, float, float]:
    """(x0, x1, y0, y1) of the hand's outline over the given hand-frame z values (mm)."""
    s = hand["soft"]
    cx, cy = s["centre"]
    ar, au, bd, bp = s["semi"]
    phi = np.deg2rad(s["phi_deg"])
    corners = np.array([[-ar, -bd], [au, -bd], [au, bp], [-ar, bp]])
    c, sn = np.cos(phi), np.sin(phi)
    xs = cx + c * corners[:, 0] - sn * corners[:, 1]
    ys = cy + sn * corners[:, 0] + c * corners[:, 1]
    x0, x1, y0, y1 = xs.min(), xs.max(), ys.min(), ys.max()
    th = hand["thumb"]
    if th["present"]:
        d = np.asarray(th["direction"])
        r = (th["radii"][0] + th["soft_mm"]) / max(d[2], 0.3)
        for z in z_values:
            tx, ty = an.thumb_centre(th, z)
            x0, x1, y0, y1 = min(x0, tx - r), max(x1, tx + r), min(y0, ty - r), max(y1, ty + r)
    return float(x0), float(x1), float(y0), float(y1)
