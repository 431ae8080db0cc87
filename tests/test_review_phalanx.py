"""A mask on MC2's own proximal phalanx (in line with MC2, so the row-of-heads check passes it) is
caught by where it ends along the ray: MC2 leaves the field proximally, the phalanx does not."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd.review import REASON_HAND
from napari_vbmd.review_hand import MASK_SHORT_OF_MC2, PROXIMAL_REACH_MM, phalanx_concern
from napari_vbmd.scan import Scan
from napari_vbmd.segmentation.hand_image import Cue, ImageEvidence

SPACING = (0.082, 0.082, 0.082)


def _scan(nz=110):
    return Scan(np.zeros((nz, 20, 20), dtype=np.int16), SPACING)


def _mask(nz, first, last):
    mask = np.zeros((nz, 20, 20), dtype=bool)
    mask[first : last + 1, 5:15, 5:15] = True
    return mask


def _evidence(w_score):
    return ImageEvidence(cues=[Cue("w", "joint space 1", w_score, ""), Cue("u", "head sizes", 3.0, "")])


def test_a_mask_reaching_the_proximal_end_is_mc2():
    assert phalanx_concern(_mask(110, 40, 109), _scan(), _evidence(3.0), (0, 110)) is None
    # within the reach allowed (2 mm = 24 slices at 0.082 mm)
    assert phalanx_concern(_mask(110, 40, 109 - int(PROXIMAL_REACH_MM / 0.082)), _scan(), _evidence(3.0),
                           (0, 110)) is None


def test_a_mask_stopping_short_of_the_proximal_end_is_the_phalanx():
    """indep_70020: the classical method's mask ran over slices 0-63 where MC2 is 50-109 (Dice 0)."""
    flag = phalanx_concern(_mask(110, 0, 63), _scan(), _evidence(4.9), (0, 110))
    assert flag is not None and REASON_HAND in flag.reasons
    assert flag.details["mask_on"] == MASK_SHORT_OF_MC2 and flag.details["mask_on"].startswith("MC2's proximal phalanx")
    assert flag.details["short_of_proximal_end_mm"] == pytest.approx(46 * 0.082)
    assert "3.8 mm short of the proximal end of the scan (last slice)" in flag.description


def test_slices_running_proximal_to_distal_and_the_range_segmented():
    # the image shows the slices run the other way: the proximal end is the first slice
    assert phalanx_concern(_mask(110, 0, 70), _scan(), _evidence(-3.0), (0, 110)) is None
    assert phalanx_concern(_mask(110, 46, 109), _scan(), _evidence(-3.0), (0, 110)) is not None
    # a slice range that ends early: its end is the proximal end of what was segmented
    assert phalanx_concern(_mask(110, 40, 79), _scan(), _evidence(3.0), (0, 80)) is None


def test_no_verdict_when_the_image_does_not_show_the_proximal_end():
    assert phalanx_concern(_mask(110, 0, 63), _scan(), _evidence(1.0), (0, 110)) is None
    assert phalanx_concern(_mask(110, 0, 63), _scan(), None, (0, 110)) is None
    assert phalanx_concern(_mask(110, 0, 63), _scan(), ImageEvidence(problem="a crop"), (0, 110)) is None


def test_a_mask_of_mc2_that_loses_its_shaft_is_not_called_the_phalanx_alone():
    """indep3_90006 (third independent family): the networks' mask lay on MC2 (99 % of its voxels in the
    truth) over slices 26-81 where MC2 runs 26-109; refused, and the line must not say it is the phalanx."""
    flag = phalanx_concern(_mask(110, 26, 81), _scan(), _evidence(3.0), (0, 110))
    assert flag is not None
    assert "or leaves MC2's shaft out there; either way it is not MC2 whole" in flag.description
