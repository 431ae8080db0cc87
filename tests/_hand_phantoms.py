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
