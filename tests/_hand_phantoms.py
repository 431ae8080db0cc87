"""Small whole-hand and cropped phantoms for the hand tests (0.25 mm voxels, 9 mm along the bones:
a few seconds each), written once per session."""
from __future__ import annotations

from napari_vbmd.phantom import PhantomSpec, generate_phantom

WHOLE_HAND = dict(fov="full", n_slices=36, spacing_mm=0.25, motion_grade=1, hand_in_header=False)
CROP = dict(fov="cropped", n_slices=36, spacing_mm=0.25, hand_in_header=False)


def whole_hand(seed: int = 9, hand: str = "right"):
    return generate_phantom(PhantomSpec(seed=seed, hand=hand, **WHOLE_HAND))


def crop(seed: int = 9, hand: str = "left", **changes):
    return generate_phantom(PhantomSpec(seed=seed, hand=hand, **{**CROP, **changes}))


def carried_into_the_phalanx(mask, density, slices: int = 5):
    """``mask`` (bool, z y x) carried ``slices`` slices on across the joint space at its first slice, over the bone
    ``density`` (mg HA/cm³) shows there, as a network following the bone carries it; short of the scan's end. On
    :func:`crop`'s seed 9 (MC2 on slices 11-35, its phalanx on 0-12) five slices hold 35 mm³ of the phalanx."""
    import numpy as np
    from scipy import ndimage

    from napari_vbmd.review_hand import BONE_PIECE_MG

    mask = np.asarray(mask, dtype=bool).copy()
    first = int(np.flatnonzero(mask.any(axis=(1, 2)))[0])
    near = ndimage.binary_dilation(mask.any(axis=0), iterations=8)
    for z in range(first - slices, first):
        bone = ndimage.binary_closing((density[z] > BONE_PIECE_MG) & near, iterations=3)
        mask[z] = ndimage.binary_dilation(ndimage.binary_fill_holes(bone), iterations=1)
    return mask


def carry_into_the_phalanx_inside_the_pipeline(monkeypatch):
    """Patch the pipeline so that the model's mask reaches the joint-space cut (``stages.finish``, after the waist
    split) :func:`carried_into_the_phalanx`, as a network that carries it across the joint space draws it."""
    import napari_vbmd.segmentation.stages as stages

    waist_cut = stages.separate_at_joint

    def carried(mask, densities, spacing):
        kept, cut = waist_cut(mask, densities, spacing)
        return carried_into_the_phalanx(kept, densities(0, kept.shape[0])), cut

    monkeypatch.setattr(stages, "separate_at_joint", carried)
