"""vBMD figures on volumes whose answers are known by construction."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan, VbmdError
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.scan import apply_user_calibration


def cylinder_scan():
    z, y, x = np.mgrid[0:10, 0:40, 0:40]
    inside = (y - 20) ** 2 + (x - 20) ** 2 <= 10**2
    inside[:2] = False
    inside[8:] = False
    density = np.where(inside, 300.0, 0.0).astype(np.float32)
    density[2:8] += np.where(inside[2:8], np.linspace(-50, 50, 6)[:, None, None], 0)
    image = Scan(data=density, spacing=(0.1, 0.1, 0.1), unit="mg_ha_cm3")
    mask = image.with_data(inside.astype(np.uint8), kind="mask", unit="unknown")
    return image, mask, inside


def test_known_cylinder():
    image, mask, inside = cylinder_scan()
    r = measure_vbmd(image, mask)
    assert r.n_voxels == int(inside.sum())
    assert r.d100_mg_ha_cm3 == pytest.approx(300.0, abs=1e-4)  # the ramp is symmetric
    assert r.n_slices == 6 and (r.first_slice, r.last_slice) == (2, 7)
    assert r.volume_mm3 == pytest.approx(inside.sum() * 0.001)
    assert r.mean_slice_area_mm2 == pytest.approx(inside[2].sum() * 0.01)
    assert r.profile.density_mg_ha_cm3 == pytest.approx(list(300 + np.linspace(-50, 50, 6)), abs=1e-4)
    assert r.sd_mg_ha_cm3 == pytest.approx(np.std(image.data[inside], ddof=1), rel=1e-5)


def test_slice_range_limits_the_measurement():
    image, mask, _ = cylinder_scan()
    r = measure_vbmd(image, mask, slices=(2, 4))
    assert r.n_slices == 2
    assert r.d100_mg_ha_cm3 == pytest.approx(300 - 50 + 10, abs=1e-3)
    with pytest.raises(VbmdError, match="slice range"):
        measure_vbmd(image, mask, slices=(5, 50))


def test_empty_mask_is_refused():
    image, mask, _ = cylinder_scan()
    with pytest.raises(VbmdError, match="empty"):
        measure_vbmd(image, mask.with_data(np.zeros_like(mask.data)))


def test_native_values_use_the_calibration():
    cal = Calibration(density_slope=1632.72, density_intercept=-396.136, mu_scaling=8192, mu_water=0.2402)
    native = np.full((2, 3, 3), 4000, np.int16)
    image = Scan(data=native, spacing=(0.082,) * 3, calibration=cal, unit="native")
    r = measure_vbmd(image, np.ones(native.shape, bool))
    assert r.d100_mg_ha_cm3 == pytest.approx(4000 * 1632.72 / 8192 - 396.136)


def test_uncalibrated_values_are_never_guessed():
    image = Scan(data=np.ones((2, 3, 3), np.float32), spacing=(1, 1, 1))
    with pytest.raises(VbmdError, match="no density calibration"):
        measure_vbmd(image, np.ones((2, 3, 3), bool))
    said = apply_user_calibration(image, slope=2.0, intercept=-1.0)
    assert measure_vbmd(said, np.ones((2, 3, 3), bool)).d100_mg_ha_cm3 == pytest.approx(1.0)
    as_density = apply_user_calibration(image, units="mg_ha_cm3")
    assert measure_vbmd(as_density, np.ones((2, 3, 3), bool)).d100_mg_ha_cm3 == pytest.approx(1.0)
    with pytest.raises(VbmdError, match="both"):
        apply_user_calibration(image, slope=2.0)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(density_slope=0, density_intercept=0), "slope is 0"),
        (dict(density_slope=1, density_intercept=0, mu_scaling=-1), "mu scaling"),
        (dict(density_slope=float("nan"), density_intercept=0), "finite"),
        (dict(density_slope=1, density_intercept=0, mu_water=0), "mu water"),
    ],
)
def test_impossible_calibrations(kwargs, message):
    with pytest.raises(VbmdError, match=message):
        Calibration(**kwargs)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(data=np.ones((3, 3))), "3-D"),
        (dict(data=np.ones((0, 3, 3))), "empty"),
        (dict(data=np.ones((2, 3, 3)), spacing=(0, 1, 1)), "spacing"),
        (dict(data=np.ones((2, 3, 3)), hand="middle"), "hand"),
    ],
)
def test_impossible_scans(kwargs, message):
    kwargs.setdefault("spacing", (1, 1, 1))
    with pytest.raises(VbmdError, match=message):
        Scan(**kwargs)
