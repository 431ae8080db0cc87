"""The classical method says when the bone outline it chose as MC2 holds two metacarpals: noise or blur
bridging the gap on a single slice made MC2 and MC3 one bone candidate, and the pipeline's largest-component
step then kept MC3 alone and measured it as MC2 (training generator's development phantom 33025: Dice 0, no
refusal, no flag). The pipeline refuses such a case with one line."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from _hand_phantoms import crop
from _inputs_helpers import assert_segment_refused
from napari_vbmd.evaluation.metrics import dice
from napari_vbmd.segmentation.classical import bone_candidates, bone_cores, classical_mask, metacarpals_in
from napari_vbmd.segmentation.focus import TwoBonesError
from napari_vbmd.segmentation.pipeline import run, segment
from napari_vbmd.segmentation.settings import SegmentSettings

SPACING = (0.1, 0.12, 0.12)  # the classical method's working grid: native slices, 0.12 mm in-plane
SHAPE = (40, 110, 200)


def _rod(centre_x: int, radius_px: int, first_slice: int = 0) -> np.ndarray:
    yy, xx = np.ogrid[:SHAPE[1], :SHAPE[2]]
    rod = np.zeros(SHAPE, bool)
    rod[first_slice:] = (yy - 55) ** 2 + (xx - centre_x) ** 2 <= radius_px ** 2
    return rod


def _density(*solids: np.ndarray) -> np.ndarray:
    density = np.full(SHAPE, 50.0, np.float32)  # soft tissue
    for solid in solids:
        density[solid] = 700.0
    return density


MC2 = _rod(50, 28, first_slice=8)  # radial (smaller x in right-hand orientation); its head begins at slice 8
MC3 = _rod(135, 34)  # ulnar, thicker, running through the whole scan
BRIDGE = np.zeros(SHAPE, bool)
BRIDGE[25, 53:58, 50:135] = True  # 0.6 mm wide, on one slice only


def test_two_bones_apart_the_radial_one_is_mc2_and_nothing_is_said():
    findings: dict = {}
    mask = classical_mask(_density(MC2, MC3), SPACING, active_contour=False, findings=findings)
    assert dice(MC2, mask) > 0.99 and not (mask & MC3).any() and findings == {}


def test_two_bones_joined_on_one_slice_are_said_to_be_joined():
    findings: dict = {}
    mask = classical_mask(_density(MC2, MC3, BRIDGE), SPACING, active_contour=False, findings=findings)
    assert findings == {"metacarpals_joined": 2}
    assert (mask & MC3).any()  # the outline it chose holds both: no mask of it is MC2's


def test_metacarpals_are_counted_by_their_cores():
    grooved = MC3 & ~_rod(170, 14)  # one bone with a groove along its whole length, 1.7 mm deep
    labels, _ = ndimage.label(grooved)
    assert metacarpals_in(labels, 1, SPACING) == 1
    joined, n = ndimage.label(MC2 | MC3 | BRIDGE)
    assert n == 1 and metacarpals_in(joined, 1, SPACING) == 2
    assert not bone_cores(BRIDGE, SPACING).any()  # the bridge has no core: thinner than twice the thinning
    small = MC3 | _rod(92, 12)  # a small bone touching MC3: its core is under 15 % of MC3's, not a metacarpal
    labels, n = ndimage.label(small)
    assert n == 1 and metacarpals_in(labels, 1, SPACING) == 1


def _bridged_crop():
    """The small crop phantom with MC2 and its neighbour joined by a 0.5 mm bar of bone on one slice."""
    case = crop(seed=9, hand="left")
    image, truth = case.image, case.truth.data.astype(bool)
    z = int(np.flatnonzero(truth.any(axis=(1, 2))).mean())
    bones, n = ndimage.label(bone_candidates(image.density()[z:z + 1], image.spacing)[0])
    mc2 = np.bincount(bones[truth[z]], minlength=n + 1)[1:].argmax() + 1
    sizes = ndimage.sum_labels(np.ones_like(bones), bones, range(1, n + 1))
    neighbour = max((label for label in range(1, n + 1) if label != mc2), key=lambda label: sizes[label - 1])
    (y2, x2), (y3, x3) = ndimage.center_of_mass(bones == mc2), ndimage.center_of_mass(bones == neighbour)
    data = np.array(image.data)
    y = int(round((y2 + y3) / 2))
    data[z, y:y + 2, int(min(x2, x3)):int(max(x2, x3))] = image.calibration.density_to_native(900.0)
    return case, image.with_data(data)


def test_a_crop_whose_mc2_is_joined_to_its_neighbour_is_refused_and_nothing_is_written(tmp_path, capsys):
    case, bridged = _bridged_crop()
    assert segment(case.image, model="classical", hand="left", threads=1).mask.data.any()  # as it is: measured
    with pytest.raises(TwoBonesError, match="holds 2 metacarpals joined together .* nothing written: try another "
                                            r"model \(the default model\)"):
        segment(bridged, model="classical", hand="left", threads=1)
    kept = run(bridged, SegmentSettings(model="classical", hand="left", threads=1), refuse_other_bone=False)
    assert kept.mask.header["segmentation"]["metacarpals_joined"] == 2  # what the benchmarks score

    assert_segment_refused(capsys, tmp_path, bridged, "bridged.aim", words="cannot tell which is MC2")
