"""Anatomy of the fifth independent family: lofted quadrant-superellipse bones and the hand around them.

Every bone is a stack of closed cross-sections swept along a curved, twisted centreline (a loft): in a
slice at distance ``t`` proximal of the head's apex the section is a *quadrant superellipse* (four
semi-axes, radial/ulnar and dorsal/palmar, and one exponent per dorsal/palmar half) united with two
palmar condyle superellipses and cut by an intercondylar notch; a dome profile ``s(t)`` closes the
head distally, a neck taper narrows it proximally. Inside/outside is decided exactly at any point
(``label``), so voxels are classified by point sampling. The trabecular compartment is filled by a
warped, perforated sheet gyroid (a level band of a triply periodic minimal surface). All lengths are
millimetres in the *hand frame* of a right hand: x radial -> ulnar, y dorsal -> palmar, z distal ->
proximal (z = 0 at the unposed scan's first slice). A left hand is the mirror image (done at the end).
"""
from __future__ import annotations

import numpy as np

OUT, CORTEX, INNER, PIT = 0, 1, 2, 3
F32 = np.float32


def _u(rng, lo, hi):
    return float(rng.uniform(lo, hi))


def smoothstep(x):
    x = np.clip(x, 0.0, 1.0)
    return x * x * (3.0 - 2.0 * x)


def dome(t, depth):
    """Normalised section size of a head closed by a dome of the given depth (0 at the apex, 1 beyond)."""
    q = np.clip(1.0 - np.asarray(t, dtype=F32) / F32(depth), 0.0, 1.0)
    out = np.sqrt(np.maximum(1.0 - q * q, 0.0))
    return np.where(np.asarray(t) < 0, F32(0.0), out).astype(F32)


def _quad_pow(u, v, a_neg, a_pos, b_neg, b_pos, p_neg, p_pos):
    """(|u|/a)^p + (|v|/b)^p of a quadrant superellipse (a, b chosen by the signs of u, v; p by v)."""
    a = np.maximum(np.where(u < 0, a_neg, a_pos), 1e-4).astype(F32, copy=False)
    b = np.maximum(np.where(v < 0, b_neg, b_pos), 1e-4).astype(F32, copy=False)
    p = np.where(v < 0, F32(p_neg), F32(p_pos))
    tiny = F32(1e-30)  # x^p as exp(p log x): the vectorised form (a power with an array exponent is slow)
    return np.exp(p * np.log(np.maximum(np.abs(u) / a, tiny))) + np.exp(p * np.log(np.maximum(np.abs(v) / b, tiny)))


def _ell_pow(u, v, cu, cv, a, b, p=2.0):
    a = np.maximum(a, 1e-4).astype(F32, copy=False)
    b = np.maximum(b, 1e-4).astype(F32, copy=False)
    du, dv = np.abs(u - cu) / a, np.abs(v - cv) / b
    if p == 2.0:
        return du * du + dv * dv
    tiny = F32(1e-30)
    return np.exp(F32(p) * np.log(np.maximum(du, tiny))) + np.exp(F32(p) * np.log(np.maximum(dv, tiny)))


def random_rotation(rng) -> np.ndarray:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                     [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                     [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])


# ---------------------------------------------------------------------------------------------
# trabecular texture: warped, perforated sheet gyroid


def draw_texture(rng, bvtv: float, tissue: float) -> dict:
    lam = _u(rng, 1.05, 1.45)  # cell period, mm
    tex = {
        "rotation": random_rotation(rng).tolist(),
        "period_mm": lam,
        "axial_stretch": _u(rng, 1.1, 1.45),  # cells elongated along the bone axis
        "warp_amp_mm": _u(rng, 0.3, 0.5) * lam,
        "warp": [[*_unit(rng).tolist(), _u(rng, 1.5, 4.5), _u(rng, 0, 2 * np.pi)] for _ in range(9)],
        "perforation": [[*_unit(rng).tolist(), _u(rng, 0.6, 1.3), _u(rng, 0, 2 * np.pi)] for _ in range(6)],
        "perforation_gain": _u(rng, 1.8, 2.4),
        "bvtv_target": bvtv,
        "tissue_mg_ha_cm3": tissue,
    }
    tex["w0"] = _calibrate_w0(tex, np.random.default_rng(rng.integers(2**31)))
    return tex


def _unit(rng):
    v = rng.normal(size=3)
    return v / np.linalg.norm(v)


def _gyroid_fields(tex, u, v, t):
    """Gyroid value g, its gradient norm (mm^-1) and the perforation field H (unit variance)."""
    r = np.asarray(tex["rotation"], dtype=F32)
    t2 = t / F32(tex["axial_stretch"])
    q = [r[i, 0] * u + r[i, 1] * v + r[i, 2] * t2 for i in range(3)]
    amp = F32(tex["warp_amp_mm"])
    for n, (dx, dy, dz, wl, ph) in enumerate(tex["warp"]):
        k = F32(2 * np.pi / wl)
        q[n % 3] = q[n % 3] + amp / F32(np.sqrt(3.0)) * np.sin(k * (dx * u + dy * v + dz * t) + F32(ph))
    k = F32(2 * np.pi / tex["period_mm"])
    sx, cx = np.sin(k * q[0]), np.cos(k * q[0])
    sy, cy = np.sin(k * q[1]), np.cos(k * q[1])
    sz, cz = np.sin(k * q[2]), np.cos(k * q[2])
    g = sx * cy + sy * cz + sz * cx
    gx = cx * cy - sz * sx
    gy = cy * cz - sx * sy
    gz = cz * cx - sy * sz
    grad = k * np.sqrt(gx * gx + gy * gy + gz * gz) + F32(1e-3)
    h = np.zeros_like(u)
    for dx, dy, dz, wl, ph in tex["perforation"]:
        h += np.cos(F32(2 * np.pi / wl) * (dx * u + dy * v + dz * t) + F32(ph))
    h *= F32(np.sqrt(2.0 / len(tex["perforation"])))
    return g, grad, h


def _calibrate_w0(tex, rng) -> float:
    """The sheet half-width (in g units) giving the target bone volume fraction where the modulation is 1."""
    pts = rng.uniform(-6, 6, size=(3, 40000)).astype(F32)
    g, _, h = _gyroid_fields(tex, *pts)
    scale = 1.0 + tex["perforation_gain"] * h
    ratio = np.where(scale > 0, np.abs(g) / np.maximum(scale, 1e-6), np.inf)
    return float(np.quantile(ratio, tex["bvtv_target"]))


def texture_fraction(tex, u, v, t, modulation, voxel):
    """Bone volume fraction of voxels centred at (u, v, t): the overlap of a voxel-wide window along the
    sheet normal with the sheet (exact for a locally flat sheet), so thin sheets keep their mass."""
    g, grad, h = _gyroid_fields(tex, u, v, t)
    w = F32(tex["w0"]) * modulation * (F32(1.0) + F32(tex["perforation_gain"]) * h)
    half = np.maximum(w, 0) / grad  # half thickness, mm
    d = np.abs(g) / grad  # distance to the mid-surface, mm
    hw = F32(0.5 * voxel)
    overlap = np.minimum(d + hw, half) - np.maximum(d - hw, -half)
    return np.clip(overlap / F32(voxel), 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# metacarpal with its proximal phalanx base


def draw_metacarpal(rng, name, cx, cy, width, depth, z_apex, joint_gap, slope_x, bvtv, rho_cortex,
                    tissue, head_cortex, shaft_cortex) -> dict:
    asym = _u(rng, -0.08, 0.08)
    fd = _u(rng, 0.40, 0.48)
    ac = _u(rng, 0.42, 0.52)
    cu = _u(rng, 0.36, min(0.5, 0.97 - ac))
    bc = _u(rng, 0.5, 0.62)
    cv = _u(rng, 0.3, min(0.45, 1.02 - bc))
    rd = _u(rng, 4.5, 6.5)
    t_n0 = rd + _u(rng, 0.5, 1.5)
    bone = {
        "kind": "metacarpal", "name": name, "cx": cx, "cy": cy, "z_apex": z_apex,
        "width_mm": width, "depth_mm": depth,
        "a_r": 0.5 * width * (1 + asym), "a_u": 0.5 * width * (1 - asym),
        "b_d": depth * fd, "b_p": depth * (1 - fd),
        "p_d": _u(rng, 1.9, 3.0), "p_p": _u(rng, 1.6, 2.4),
        "dome_depth": rd, "neck_start": t_n0, "neck_length": _u(rng, 3.0, 5.0),
        "shaft_ratio_x": _u(rng, 0.55, 0.66), "shaft_ratio_y": _u(rng, 0.62, 0.76),
        "phi0_deg": _u(rng, -12, 12), "twist_deg_per_mm": _u(rng, -1.5, 1.5),
        "slope_x": slope_x, "slope_y": _u(rng, -0.06, 0.06),
        "curv_x": _u(rng, -0.003, 0.003), "curv_y": _u(rng, -0.003, 0.003),
        "apex_off": [_u(rng, -0.1, 0.1) * width, _u(rng, -0.12, 0.05) * depth],
        "condyle": [ac, bc, cu, cv], "notch": [_u(rng, 0.16, 0.3), _u(rng, 0.04, 0.1)],
        "head_cortex_mm": head_cortex, "shaft_cortex_mm": shaft_cortex,
        "cortex_quadrant": [_u(rng, 0.8, 1.25) for _ in range(4)],  # radial, ulnar, dorsal, palmar
        "rho_cortex": rho_cortex,
        "texture": draw_texture(rng, bvtv, tissue),
        "phalanx": {
            "joint_gap_mm": joint_gap, "offset": [_u(rng, -0.4, 0.4), _u(rng, 0.2, 0.8)],
            "scale": [_u(rng, 0.85, 0.98), _u(rng, 0.85, 0.98), _u(rng, 0.7, 0.85), _u(rng, 0.75, 0.9)],
            "p": _u(rng, 2.0, 2.8), "phi_deg": _u(rng, -8, 8), "cup_radius": _u(rng, 0.6, 0.8),
            "cortex_mm": _u(rng, 0.25, 0.5), "flare_mm": _u(rng, 4.0, 7.0), "lip": _u(rng, 0.6, 1.2),
            "rho_cortex": rho_cortex * _u(rng, 0.95, 1.03),
            "texture": draw_texture(rng, bvtv * _u(rng, 0.85, 1.1), tissue),
        },
    }
    return bone


def _mc_frame(b, z):
    """Bone-local section coordinates: t along the axis, the centre and twist at t."""
    t = z - F32(b["z_apex"])
    rd = b["dome_depth"]
    tr = t - F32(rd)
    s = dome(t, rd)
    lag = (F32(1.0) - s) ** 2
    cx = F32(b["cx"]) + F32(b["slope_x"]) * tr + F32(b["curv_x"]) * tr * tr + F32(b["apex_off"][0]) * lag
    cy = F32(b["cy"]) + F32(b["slope_y"]) * tr + F32(b["curv_y"]) * tr * tr + F32(b["apex_off"][1]) * lag
    phi = np.deg2rad(F32(b["phi0_deg"]) + F32(b["twist_deg_per_mm"]) * tr)
    return t, s, cx, cy, phi


def _local(x, y, cx, cy, phi):
    dx, dy = x - cx, y - cy
    c, s = np.cos(phi), np.sin(phi)
    return c * dx + s * dy, -s * dx + c * dy


def _taper(b, t):
    n = smoothstep((t - F32(b["neck_start"])) / F32(b["neck_length"]))
    tx = F32(1.0) - F32(1.0 - b["shaft_ratio_x"]) * n
    ty = F32(1.0) - F32(1.0 - b["shaft_ratio_y"]) * n
    head = F32(1.0) - smoothstep((t - F32(b["neck_start"]) + F32(1.0)) / F32(0.6 * b["neck_length"] + 1.0))
    return tx, ty, head, n


def _cortex_thickness(b, t):
    w = smoothstep((t - F32(b["neck_start"])) / F32(b["neck_length"] + 1.0))
    return F32(b["head_cortex_mm"]) + F32(b["shaft_cortex_mm"] - b["head_cortex_mm"]) * w


def _section_pow(b, u, v, sx, sy, head, grow):
    """Normalised 'radius^p' of the united section (main body, two condyles) minus the notch.

    sx, sy scale the section (dome x taper); ``grow`` (mm, negative shrinks) offsets every semi-axis.
    Returns (inside_main_or_condyles value <= 1, notch value < 1 means cut)."""
    ac, bc, cu, cv = b["condyle"]
    main = _quad_pow(u, v, b["a_r"] * sx + grow, b["a_u"] * sx + grow, b["b_d"] * sy + grow,
                     b["b_p"] * sy + grow, b["p_d"], b["p_p"])
    cs = F32(0.5) + F32(0.5) * head
    c1 = _ell_pow(u, v, -cu * b["a_r"] * sx * head, cv * b["b_p"] * sy * head,
                  ac * b["a_r"] * sx * cs + grow, bc * b["b_p"] * sy * cs + grow, 2.0)
    c2 = _ell_pow(u, v, cu * b["a_u"] * sx * head, cv * b["b_p"] * sy * head,
                  ac * b["a_u"] * sx * cs + grow, bc * b["b_p"] * sy * cs + grow, 2.0)
    an, bn = b["notch"]
    am = 0.5 * (b["a_r"] + b["a_u"])
    notch = _ell_pow(u, v, F32(0.0), b["b_p"] * sy, an * am * sx * head - grow, bn * b["b_p"] * sy * head - grow)
    return np.minimum(main, np.minimum(c1, c2)), notch


def metacarpal_label(b, x, y, z, pits=()):
    """Label (OUT, CORTEX, INNER, PIT) of points in the hand frame, and the bone-local (u, v, t)."""
    t, s, cx, cy, phi = _mc_frame(b, z)
    u, v = _local(x, y, cx, cy, phi)
    tx, ty, head, _ = _taper(b, t)
    outer, notch = _section_pow(b, u, v, tx * s, ty * s, head, F32(0.0))
    solid = (outer <= 1.0) & (notch >= 1.0) & (t >= 0)
    tc = _cortex_thickness(b, t)
    s_in = dome(t - F32(b["head_cortex_mm"]), b["dome_depth"] - b["head_cortex_mm"])
    qr, qu, qd, qp = b["cortex_quadrant"]
    qa = np.where(u < 0, F32(qr), F32(qu))
    qb = np.where(v < 0, F32(qd), F32(qp))
    # the inner (endosteal) surface: the same loft with semi-axes shorter by the local cortex thickness
    m = F32(0.5) * (qa + qb)
    inner, notch_in = _section_pow(b, u / np.maximum(s_in, F32(1e-3)), v / np.maximum(s_in, F32(1e-3)),
                                   tx, ty, head, -tc * m)
    core = solid & (inner <= 1.0) & (notch_in >= 1.0) & (s_in > 1e-3)
    lab = np.where(core, np.uint8(INNER), np.where(solid, np.uint8(CORTEX), np.uint8(OUT)))
    for pit in pits:
        lab = np.where((lab != OUT) & pit_inside(pit, x, y, z), np.uint8(PIT), lab)
    return lab, u, v, t


def metacarpal_modulation(b, u, v, t):
    """Trabecular density modulation: denser under the joint surface, sparse in the neck's centre."""
    tx, ty, head, neck = _taper(b, t)
    sub = F32(1.0) + F32(0.3) * (F32(1.0) - smoothstep(t / F32(b["dome_depth"])))
    rr = (u / F32(0.5 * b["width_mm"]) / tx) ** 2 + (v / F32(0.5 * b["depth_mm"]) / ty) ** 2
    cav = F32(1.0) - F32(0.65) * neck * np.clip(F32(1.0) - rr, 0.0, 1.0)
    return (sub * cav).astype(F32)


GAUGE_STEP = 0.05


def head_gauge(b) -> tuple[np.ndarray, float]:
    """The head's gauge on a (v, u) grid: the dome scale s at which a section point first lies in the head
    (the dome scales the whole united section about its centre), found by bisection; and the grid's half size."""
    half = 1.3 * max(b["a_r"], b["a_u"], b["b_d"], b["b_p"])
    g = np.arange(-half, half + GAUGE_STEP / 2, GAUGE_STEP, dtype=F32)
    v, u = np.meshgrid(g, g, indexing="ij")
    lo, hi = np.zeros_like(u), np.full_like(u, F32(1.6))
    one = F32(1.0)
    for _ in range(16):
        mid = F32(0.5) * (lo + hi)
        outer, notch = _section_pow(b, u, v, mid, mid, one, F32(0.0))
        inside = (outer <= 1.0) & (notch >= 1.0)
        hi = np.where(inside, mid, hi)
        lo = np.where(inside, lo, mid)
    return hi, float(half)


def phalanx_label(b, x, y, z, gauge):
    """The proximal phalanx base of metacarpal ``b``: a cup facing the head across the joint gap."""
    ph = b["phalanx"]
    rd = b["dome_depth"]
    t = z - F32(b["z_apex"])
    # the head's gauge decides the cup's depth: the joint gap is the same everywhere along z
    _, _, cx, cy, phi = _mc_frame(b, z)
    u, v = _local(x, y, cx, cy, phi)
    table, half = gauge
    coords = np.stack([(v + F32(half)) / F32(GAUGE_STEP), (u + F32(half)) / F32(GAUGE_STEP)])
    from scipy.ndimage import map_coordinates
    gam = map_coordinates(table, coords.reshape(2, -1), order=1, mode="nearest").reshape(u.shape)
    rho = np.minimum(gam, F32(ph["cup_radius"]))
    # beyond the cup the rim bevels away distally (a lip, not a flat plate)
    lip = F32(ph["lip"] * rd) * np.maximum(gam - F32(ph["cup_radius"]), 0.0)
    cup = F32(rd) * (F32(1.0) - np.sqrt(np.maximum(F32(1.0) - rho * rho, 0.0))) - F32(ph["joint_gap_mm"]) - lip
    # the footprint: a superellipse centred under the head, widest at the base, narrowing distally
    t_rim = F32(rd) * F32(1.0 - np.sqrt(1.0 - ph["cup_radius"] ** 2)) - F32(ph["joint_gap_mm"])
    flare = F32(1.0) - F32(0.25) * smoothstep((t_rim - t) / F32(ph["flare_mm"]))
    x0 = F32(b["cx"] - b["slope_x"] * rd + b["apex_off"][0]) + F32(ph["offset"][0])
    y0 = F32(b["cy"] - b["slope_y"] * rd + b["apex_off"][1]) + F32(ph["offset"][1])
    pu, pv = _local(x, y, x0, y0, np.deg2rad(F32(b["phi0_deg"] + ph["phi_deg"])))
    sr, su, sd, sp = ph["scale"]
    a = [b["a_r"] * sr * flare, b["a_u"] * su * flare, b["b_d"] * sd * flare, b["b_p"] * sp * flare]
    foot = _quad_pow(pu, pv, *a, ph["p"], ph["p"])
    solid = (foot <= 1.0) & (t <= cup)
    c = F32(ph["cortex_mm"])
    foot_in = _quad_pow(pu, pv, *[ai - c for ai in a], ph["p"], ph["p"])
    core = solid & (foot_in <= 1.0) & (t <= cup - c)
    lab = np.where(core, np.uint8(INNER), np.where(solid, np.uint8(CORTEX), np.uint8(OUT)))
    return lab, pu, pv, t


# ---------------------------------------------------------------------------------------------
# thumb: an oblique tubular bone (its section in a slice is an elongated ellipse)


def thumb_axes(th):
    d = np.asarray(th["direction"], dtype=float)
    e1 = np.cross(d, [0.0, 1.0, 0.0])
    e1 /= np.linalg.norm(e1)
    e2 = np.cross(d, e1)
    return d, e1, e2


def thumb_label(th, x, y, z):
    d, e1, e2 = thumb_axes(th)
    px, py, pz = (x - F32(th["p0"][0]), y - F32(th["p0"][1]), z - F32(th["p0"][2]))
    w = F32(d[0]) * px + F32(d[1]) * py + F32(d[2]) * pz
    u = F32(e1[0]) * px + F32(e1[1]) * py + F32(e1[2]) * pz
    v = F32(e2[0]) * px + F32(e2[1]) * py + F32(e2[2]) * pz
    ra, rb = th["radii"]
    bulge = F32(1.0) + F32(th["bulge"]) * np.exp(-((w - F32(th["bulge_at"])) / F32(3.0)) ** 2)
    outer = _ell_pow(u, v, F32(0), F32(0), F32(ra) * bulge, F32(rb) * bulge, th["p"])
    c = F32(th["cortex_mm"])
    inner = _ell_pow(u, v, F32(0), F32(0), F32(ra) * bulge - c, F32(rb) * bulge - c, th["p"])
    lab = np.where(inner <= 1, np.uint8(INNER), np.where(outer <= 1, np.uint8(CORTEX), np.uint8(OUT)))
    return lab, u, v, w


def thumb_centre(th, z):
    """Where the thumb's axis crosses the plane z (hand frame)."""
    d = np.asarray(th["direction"], dtype=float)
    k = (z - th["p0"][2]) / d[2]
    return th["p0"][0] + k * d[0], th["p0"][1] + k * d[1]


# ---------------------------------------------------------------------------------------------
# erosions: pits at MC2's joint margin (radial / dorsal), a union of two ellipsoids


def draw_pits(seed: int, mc2: dict) -> list[dict]:
    rng = np.random.default_rng([seed, 5007])
    pits = []
    for _ in range(4):  # always four drawn, the first n used: erosions do not change other draws
        t = _u(rng, 0.55, 1.0) * mc2["dome_depth"] + _u(rng, 0.0, 2.0)
        ang = np.deg2rad(_u(rng, 165, 285))  # 180 radial, 270 dorsal (u < 0 radial, v < 0 dorsal)
        r = _u(rng, 0.6, 1.5)
        pits.append({"t": t, "angle_deg": float(np.rad2deg(ang)), "radius_mm": r,
                     "depth_frac": _u(rng, 0.2, 0.5), "second": [*_unit(rng).tolist()],
                     "second_radius": _u(rng, 0.45, 0.75), "flatten": _u(rng, 0.6, 1.0),
                     "pannus_mg_ha_cm3": _u(rng, 40, 90)})
    for p in pits:  # place each on the bone's outer surface in the hand frame
        z = mc2["z_apex"] + p["t"]
        t, s, cx, cy, phi = (np.asarray(a, dtype=float) for a in _mc_frame(mc2, np.float32(z)))
        tx, ty, _, _ = (float(a) for a in _taper(mc2, np.float32(t)))
        ca, sa = np.cos(np.deg2rad(p["angle_deg"])), np.sin(np.deg2rad(p["angle_deg"]))
        a = (mc2["a_r"] if ca < 0 else mc2["a_u"]) * tx * float(s)
        bb = (mc2["b_d"] if sa < 0 else mc2["b_p"]) * ty * float(s)
        pp = mc2["p_d"] if sa < 0 else mc2["p_p"]
        rho = 1.0 / ((abs(ca) / a) ** pp + (abs(sa) / bb) ** pp) ** (1.0 / pp)
        lu, lv = rho * ca, rho * sa
        depth = p["radius_mm"] * (1.0 - p["depth_frac"])  # centre sits inside the surface
        lu, lv = lu - depth * ca, lv - depth * sa
        c, sn = np.cos(float(phi)), np.sin(float(phi))
        p["centre"] = [float(cx) + c * lu - sn * lv, float(cy) + sn * lu + c * lv, float(z)]
        p["normal"] = [c * ca - sn * sa, sn * ca + c * sa, 0.0]
    return pits


def pit_inside(p, x, y, z):
    cx, cy, cz = (F32(c) for c in p["centre"])
    r = F32(p["radius_mm"])
    nx, ny = F32(p["normal"][0]), F32(p["normal"][1])
    dx, dy, dz = x - cx, y - cy, z - cz
    along = dx * nx + dy * ny  # flatten the pit along the surface normal (a saucer, not a ball)
    perp2 = dx * dx + dy * dy - along * along + dz * dz
    first = perp2 / (r * r) + (along / (r * F32(p["flatten"]))) ** 2 <= 1.0
    sx, sy, sz = (F32(c) for c in p["second"])
    r2 = r * F32(p["second_radius"])
    off = F32(0.55) * r
    second = (dx - off * sx) ** 2 + (dy - off * sy) ** 2 + (dz - off * sz) ** 2 <= r2 * r2
    return first | second
