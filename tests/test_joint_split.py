"""MC2 parted from the proximal phalanx where a mask runs on across the joint (segmentation/joint.py)."""
import numpy as np
import pytest

from napari_vbmd.scan import UNIT_DENSITY, Scan
from napari_vbmd.segmentation import stages
from napari_vbmd.segmentation.joint import find_waist, separate_at_joint
from napari_vbmd.segmentation.preprocess import Box

SPACING = (0.082, 0.082, 0.082)


def disc(radius: float, size: int = 100) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    return (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= radius ** 2


def head(depth_px: float) -> float:
    """The radius (px) of MC2's section ``depth_px`` from the tip of a spherical head of radius 40 px."""
    return float(np.sqrt(max(0.0, 2 * 40.0 * depth_px - depth_px ** 2))) if depth_px < 40 else 40.0


def two_bones(phalanx_slices: int = 25, bridge_radius: float = 10.0):
    """Slices 0.. the phalanx's base (radius 35 px), then a narrow bridge over the joint (5 slices), then
    MC2: a dome (the head, from 5 px below its tip) widening to 40 px, to the last slice; densities: bone
    300 mg HA/cm3, the joint space 40."""
    n = phalanx_slices + 5 + 60
    mask = np.zeros((n, 100, 100), dtype=bool)
    mask[:phalanx_slices] = disc(35)
    mask[phalanx_slices:phalanx_slices + 5] = disc(bridge_radius)
    for k, z in enumerate(range(phalanx_slices + 5, n)):
        mask[z] = disc(head(5 + k))
    density = np.where(mask, 300.0, 0.0).astype(np.float32)
    density[phalanx_slices:phalanx_slices + 5] = np.where(mask[phalanx_slices:phalanx_slices + 5], 40.0, 0.0)
    return mask, density


def test_the_phalanx_across_a_narrow_joint_is_removed_and_mc2_kept():
    mask, density = two_bones()
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is not None and cut.kept == "higher" and 25 <= cut.slice <= 29
    assert not out[:25].any()  # the phalanx is gone
    np.testing.assert_array_equal(out[30:], mask[30:])  # MC2 whole
    assert cut.removed_voxels == int(mask.sum() - out.sum())
    assert "slice" in cut.describe() and cut.to_dict(first_slice=10)["slice"] == cut.slice + 10


def test_the_side_to_keep_is_found_whichever_way_the_slices_run():
    mask, density = two_bones()
    flipped, dens = mask[::-1].copy(), density[::-1].copy()
    out, cut = separate_at_joint(flipped, lambda z0, z1: dens[z0:z1], SPACING)
    assert cut is not None and cut.kept == "lower"
    assert not out[-25:].any()
    np.testing.assert_array_equal(out[:-30], flipped[:-30])


def test_a_whole_bone_without_a_waist_is_left_alone():
    mask = np.zeros((90, 100, 100), dtype=bool)
    for z in range(90):  # a head tapering to its tip at slice 0, a shaft beyond
        mask[z] = disc(min(40.0, 8.0 + 2.0 * z))
    out, cut = separate_at_joint(mask, lambda z0, z1: np.full((z1 - z0, 100, 100), 300.0, np.float32), SPACING)
    assert cut is None and np.array_equal(out, mask)


def test_a_slice_the_network_left_half_out_is_no_joint(monkeypatch):
    """A network that loses part of a slice (motion, a thin cortex) narrows the mask but not the
    bone's outline: the convex hull stays wide, and nothing is cut (the head would go with it)."""
    mask = np.zeros((90, 100, 100), dtype=bool)
    mask[:] = disc(40)
    ring = disc(40) & ~disc(34)
    ring[45:55, 50:] = False  # a C: what is left of three slices where the network lost the marrow
    mask[40:43] = ring
    assert find_waist(mask, SPACING) is None
    out, cut = separate_at_joint(mask, lambda z0, z1: np.full((z1 - z0, 100, 100), 300.0, np.float32), SPACING)
    assert cut is None and np.array_equal(out, mask)
    import napari_vbmd.segmentation.joint as joint

    for rule in ("HULL_RATIO", "MAX_REMOVED_FRACTION", "DOME_RATIO"):  # the areas alone would take it for a joint
        monkeypatch.setattr(joint, rule, 10.0)
    assert find_waist(mask, SPACING).slice in (40, 41, 42)


def notch(section: np.ndarray, keep_px: int = 16) -> np.ndarray:
    """What a network that lost most of a section leaves: a strip along one side (compact: the hull narrows too)."""
    out = section.copy()
    out[:, keep_px:] = False
    return out


def test_a_notch_the_network_left_in_the_shaft_is_no_joint(monkeypatch):
    """Slices where a network lost most of the shaft narrow the mask and its outline, and the far side is the
    smaller: every rule but the dome holds. MC2 is back at full width a slice beyond the notch, where a head
    would begin as a dome, so nothing is cut there, and the joint is still found."""
    import napari_vbmd.segmentation.joint as joint

    mask, density = two_bones()
    n = mask.shape[0]
    mask[n - 12:n - 10] = notch(mask[n - 12])  # two slices, 1 mm before the proximal end
    density[n - 12:n - 10] = np.where(mask[n - 12:n - 10], 300.0, 0.0)
    monkeypatch.setattr(joint, "DOME_RATIO", 10.0)  # without the dome rule, the notch is taken for the joint
    assert joint.find_waist(mask, SPACING).slice in (n - 12, n - 11)
    monkeypatch.undo()
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is not None and 25 <= cut.slice <= 29 and cut.kept == "higher"
    assert not out[:25].any()
    np.testing.assert_array_equal(out[30:], mask[30:])  # the shaft beyond the notch stays


def test_a_narrowing_midway_along_the_bone_does_not_hide_the_joint(monkeypatch):
    """A notch that parts the mask into sides of like size is no joint (the volume rule); the joint is
    looked for among the other candidates, not given up."""
    import napari_vbmd.segmentation.joint as joint

    mask, density = two_bones()
    middle = 64  # MC2 at full width; a little more than a third of the mask beyond the notch
    mask[middle:middle + 2] = notch(mask[middle], keep_px=13)
    density[middle:middle + 2] = np.where(mask[middle:middle + 2], 300.0, 0.0)
    volume_rule = joint.MAX_REMOVED_FRACTION
    monkeypatch.setattr(joint, "DOME_RATIO", 10.0)  # only the volume rule stands between the notch and a cut
    monkeypatch.setattr(joint, "MAX_REMOVED_FRACTION", 10.0)
    assert joint.find_waist(mask, SPACING).slice in (middle, middle + 1)  # the narrowest candidate
    monkeypatch.setattr(joint, "MAX_REMOVED_FRACTION", volume_rule)
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is not None and 25 <= cut.slice <= 29
    np.testing.assert_array_equal(out[30:], mask[30:])


def test_a_mask_that_starts_at_full_width_beyond_a_waist_is_not_cut():
    """A waist followed at once by the full section (no dome) is not MC2's head meeting the phalanx."""
    mask, density = two_bones()
    mask[30:] = disc(40)
    density[30:] = np.where(mask[30:], 300.0, 0.0)
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is None and np.array_equal(out, mask)


def test_two_sides_of_like_size_are_not_cut():
    """Which side is MC2 is decided by volume; where they are alike, nothing is cut."""
    mask, density = two_bones(phalanx_slices=55)
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is None and np.array_equal(out, mask)


def test_a_crumb_at_the_tip_is_no_phalanx():
    mask = np.zeros((90, 100, 100), dtype=bool)
    mask[:3] = disc(8)  # 0.4 mm2 beyond a one-slice neck
    mask[3] = disc(2)
    mask[4:] = disc(40)
    out, cut = separate_at_joint(mask, lambda z0, z1: np.full((z1 - z0, 100, 100), 300.0, np.float32), SPACING)
    assert cut is None


@pytest.mark.parametrize("threads", [1, 2])
def test_finish_parts_the_mask_and_says_where(threads):
    mask, density = two_bones()
    scan = Scan(data=density, spacing=SPACING, unit=UNIT_DENSITY)
    probability = np.where(mask, 230, 5).astype(np.uint8)
    notes = {}
    box = Box(0, mask.shape[0], 0, 100, 0, 100)
    out = stages.finish(probability, scan, box, 0.5, threads=threads, notes=notes)
    assert not out[:25].any() and out[30:].sum() == mask[30:].sum()
    assert notes["joint_cut"]["kept"] == "higher" and notes["joint_cut"]["removed_voxels"] > 0
    assert "proximal phalanx" in notes["joint_cut"]["description"]
    plain = {}
    stages.finish(np.where(disc(40)[None].repeat(60, 0), 230, 5).astype(np.uint8),
                  Scan(data=np.full((60, 100, 100), 300.0, np.float32), spacing=SPACING, unit=UNIT_DENSITY),
                  Box(0, 60, 0, 100, 0, 100), 0.5, notes=plain)
    assert plain == {"joint_cut": None}


def test_the_mask_file_records_the_cut(tmp_path):
    from napari_vbmd.io import read_mask, write_mask

    mask = Scan(data=two_bones()[0][25:].astype(np.uint8), spacing=SPACING, kind="mask", hand="right")
    mask.header["segmentation"] = {"hand": "right", "hand_source": "argument",
                                   "joint_cut": {"slice": 27, "kept": "higher", "removed_voxels": 96211}}
    log = read_mask(write_mask(tmp_path / "m.aim", mask)).header["processing_log"]
    assert "slice 27, 96211 voxels across the joint removed" in log
    mask.header["segmentation"]["joint_cut"] = {"slice": 14, "kept": "higher", "removed_voxels": 210,
                                                "by": "joint space", "beside": True, "other_slices": [14, 30]}
    log = read_mask(write_mask(tmp_path / "beside.aim", mask)).header["processing_log"]
    assert "slices 14-30, 210 voxels of another bone beside MC2 removed" in log


def test_the_review_flags_point_at_the_head_s_tip_after_a_cut():
    from napari_vbmd.review import REASON_JOINT
    from napari_vbmd.session.flags import FlagContext

    mask, density = two_bones()
    kept, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    box = Box(0, mask.shape[0], 0, 100, 0, 100)
    plain = FlagContext(box, None, density, 0.5, SPACING)
    context = FlagContext(box, None, density, 0.5, SPACING, joint_cut_slice=cut.slice,
                          joint_removed_below=cut.kept == "higher")
    first = int(np.flatnonzero(kept.any(axis=(1, 2)))[0])
    flagged = {f.slice_index: f for f in context.flags(kept)}
    assert REASON_JOINT in flagged[first].reasons
    assert (f"parted from the proximal phalanx at slice {cut.slice} and the bone below it removed: check that it "
            "was the phalanx, not MC2") in flagged[first].describe()
    unsided = FlagContext(box, None, density, 0.5, SPACING, joint_cut_slice=cut.slice)  # built without the side
    assert "the bone beyond it removed" in {f.slice_index: f for f in unsided.flags(kept)}[first].describe()
    beside = FlagContext(box, None, density, 0.5, SPACING, joint_cut_slice=cut.slice, joint_removed_below=True,
                         joint_beside=True)  # a joint-space cut of a piece beside MC2
    assert ("a piece of another bone beside MC2 was removed from the mask on this slice and its neighbours: check "
            "that it was not MC2's") in {f.slice_index: f for f in beside.flags(kept)}[first].describe()
    others = {f.slice_index: f.reasons for f in plain.flags(kept)}
    stripped = {z: [r for r in f.reasons if r != REASON_JOINT] for z, f in flagged.items()}
    assert {z: reasons for z, reasons in stripped.items() if reasons} == others  # the other flags as without it


def shaft_with_tapered_notch(tip_slice: int):
    """MC2 alone, not run on across the joint: the head's tip at ``tip_slice``, the shaft to the stack's
    last slice, and 1.6 mm before the notch (2 slices of radius 10 px, 18 slices from the end) the mask
    tapers from full width down to it, as where a network gradually loses the bone."""
    n = 120
    mask = np.zeros((n, 100, 100), dtype=bool)
    for z in range(tip_slice, n):
        radius = head(z - tip_slice + 2)
        if 80 <= z < 100:
            radius = min(radius, 40.0 - 30.0 * (z - 80) / 20)
        elif z in (100, 101):
            radius = 10.0
        mask[z] = disc(radius)
    return mask


def test_a_tapered_notch_near_the_shaft_end_is_no_joint_where_mc2_ends_inside_the_scan():
    """MC2 leaves the field of view proximally: a cut that would keep a bone ending inside the scan and
    throw away the piece that runs out of it is a notch in the shaft. The taper makes the kept side look
    like a dome, so only the stack-end rule can tell (its limit: where the mask also reaches the other end
    of the stack, through a phalanx or a head that touches it, the rule cannot, and the notch is cut)."""
    mask = shaft_with_tapered_notch(tip_slice=10)
    assert find_waist(mask, SPACING) is None
    out, cut = separate_at_joint(mask, lambda z0, z1: np.full((z1 - z0, 100, 100), 300.0, np.float32), SPACING)
    assert cut is None and np.array_equal(out, mask)

    reaching = shaft_with_tapered_notch(tip_slice=0)  # the same bone, its tip on the stack's first slice
    waist = find_waist(reaching, SPACING)
    assert waist is not None and waist.slice in (100, 101) and not waist.keep_higher


def test_a_joint_is_still_cut_where_mc2_stops_a_slice_or_two_short_of_the_stack_end():
    mask, density = two_bones()
    mask[-3:], density[-3:] = False, 0.0  # the network left the last 3 slices (0.25 mm) out
    out, cut = separate_at_joint(mask, lambda z0, z1: density[z0:z1], SPACING)
    assert cut is not None and cut.kept == "higher" and not out[:25].any()

    mask[-20:], density[-20:] = False, 0.0  # MC2 ending 1.6 mm inside the scan while the phalanx runs out of it
    assert find_waist(mask, SPACING) is None
