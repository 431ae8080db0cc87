"""Issue 21, Scanco files: ISQ voxel size and calibration (item 1), non-finite calibrations (3), a
mask of another measurement (6), long GOBJ contours (7)."""
from __future__ import annotations

import struct
import sys
from pathlib import Path

import numpy as np
import pytest

from napari_vbmd import VbmdError
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.io.identity import identity_mismatch, scan_identity
from napari_vbmd.measure import measure_vbmd

from _inputs_helpers import assert_refused, calibrated_pair, json_of, run_cli, scanco_log

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from fuzz_seeds import gobj_seed  # noqa: E402

ISQ_CALIBRATED = "test_isq_calibrated_binary_25.ISQ"
ISQ_NATIVE = "test_isq_native_only_binary_25.ISQ"


@pytest.fixture(scope="module")
def isq_dir(shared_data):
    path = shared_data / "scanco-isq"
    if not (path / ISQ_CALIBRATED).is_file():
        pytest.skip(f"{path} is missing (the real ISQ headers sit beside the checkout in CI)")
    return path


# -- item 1: ISQ ------------------------------------------------------------------------------------------
def test_isq_voxel_size_is_micrometres_over_voxels_in_mm(isq_dir, capsys):
    """1500 um over 25 voxels: 0.06 mm (it was read as 60 mm: volumes of 1e9 mm3)."""
    import py_aimio

    for name in (ISQ_CALIBRATED, ISQ_NATIVE):
        scan = read_scan(isq_dir / name)
        _, meta = py_aimio.read_isq(str(isq_dir / name))
        assert scan.spacing == pytest.approx((0.06, 0.06, 0.06))
        assert scan.spacing == pytest.approx(tuple(np.array(meta["dimensions_um"][::-1]) / meta["dimensions_p"][::-1] / 1000))
        assert scan.origin == (0.0, 0.0, 0.0)  # the raw scan: AIM positions count from its voxel (0, 0, 0)
        assert scan.header["dimensions_um"] == (1500, 1500, 1500)
    code, out, _ = run_cli(capsys, "info", isq_dir / ISQ_CALIBRATED, "--json")
    assert code == 0 and json_of(out)["spacing_mm"] == pytest.approx([0.06] * 3)


def test_isq_calibration_from_the_header_gives_3_and_5(isq_dir, capsys):
    scan = read_scan(isq_dir / ISQ_CALIBRATED)
    assert scan.calibration is not None
    assert scan.calibration.native_to_density([0, 1]) == pytest.approx([3.0, 5.0])
    assert scan.calibration.native_to_hu([0, 1]) == pytest.approx([-1000.0, -999.0])
    assert "calibration block" in scan.header["calibration_note"]
    # a mask of the scan on the scan's own grid: volume in mm3 of 0.06 mm voxels, D100 of native 1 = 5
    result = measure_vbmd(scan, read_mask(isq_dir / ISQ_CALIBRATED))
    assert result.d100_mg_ha_cm3 == pytest.approx(5.0)
    assert result.volume_mm3 == pytest.approx(result.n_voxels * 0.06**3)
    code, out, _ = run_cli(capsys, "measure", isq_dir / ISQ_CALIBRATED, isq_dir / ISQ_CALIBRATED, "--json")
    payload = json_of(out)
    assert code == 0 and payload["d100_mg_ha_cm3"] == pytest.approx(5.0)
    assert "ISQ" not in payload["calibration"] and "(file)" in payload["calibration"]


def test_isq_without_calibration_refuses_density_until_told(isq_dir, capsys):
    scan = read_scan(isq_dir / ISQ_NATIVE)
    assert scan.calibration is None and scan.unit == "native"
    code, out, _ = run_cli(capsys, "info", isq_dir / ISQ_NATIVE)
    assert code == 0 and "calibration           none" in out and "no calibration block" in out
    assert_refused(capsys, "measure", isq_dir / ISQ_NATIVE, isq_dir / ISQ_NATIVE, words="no density calibration")
    code, out, _ = run_cli(capsys, "measure", isq_dir / ISQ_NATIVE, isq_dir / ISQ_NATIVE, "--slope", "2",
                           "--intercept", "3", "--json")
    assert code == 0 and json_of(out)["d100_mg_ha_cm3"] == pytest.approx(5.0) and "(user)" in json_of(out)["calibration"]


def test_isq_header_and_aimio_disagreeing_is_refused(isq_dir, tmp_path, monkeypatch):
    import py_aimio

    real = py_aimio.read_isq

    def lying(path, **kwargs):
        array, meta = real(path, **kwargs)
        return array, {**meta, "spacing": (82.0, 82.0, 82.0)}

    monkeypatch.setattr(py_aimio, "read_isq", lying)
    with pytest.raises(VbmdError, match="aimio-py's voxel size"):
        read_scan(isq_dir / ISQ_CALIBRATED)


def _scanco_double(value: float) -> bytes:
    """The inverse of the reader's VMS double: four times the value, 16-bit words swapped."""
    bits = struct.unpack("<Q", struct.pack("<d", value * 4.0))[0]
    high, low = bits >> 32, bits & 0xFFFFFFFF
    return bytes([(high >> 16) & 255, high >> 24, high & 255, (high >> 8) & 255,
                  (low >> 16) & 255, low >> 24, low & 255, (low >> 8) & 255])


def _isq_with_slope(tmp_path, isq_dir, slope: float):
    raw = bytearray((isq_dir / ISQ_CALIBRATED).read_bytes())
    assert raw[0x898:0x8A0] == _scanco_double(2.0)  # the calibration block's rescale slope
    raw[0x898:0x8A0] = _scanco_double(slope)
    path = tmp_path / "edited.isq"
    path.write_bytes(bytes(raw))
    return path


def test_isq_slope_edit_changes_the_densities(isq_dir, tmp_path):
    scan = read_scan(_isq_with_slope(tmp_path, isq_dir, 7.5))
    assert scan.calibration.native_to_density([0, 1]) == pytest.approx([3.0, 10.5])


def test_implausible_isq_calibration_is_not_trusted(isq_dir, tmp_path, capsys):
    """A slope that makes a stored 1 a million mg HA/cm3 is no calibration to measure with."""
    path = _isq_with_slope(tmp_path, isq_dir, 1e6)
    scan = read_scan(path)
    assert scan.calibration is None and "not trusted" in scan.header["calibration_note"]
    assert_refused(capsys, "measure", path, path, words="no density calibration")


def test_a_hostile_isq_byte_count_is_refused_before_aimio_allocates_it(isq_dir, tmp_path, monkeypatch):
    """nr_of_bytes 2**31 - 1 made aimio-py allocate 2 GB and spend seconds before failing."""
    import py_aimio

    raw = bytearray((isq_dir / ISQ_NATIVE).read_bytes())
    assert struct.unpack_from("<i", raw, 20)[0] == 512 + 2 * 25**3
    struct.pack_into("<i", raw, 20, 2**31 - 1)
    (tmp_path / "big.isq").write_bytes(bytes(raw))
    monkeypatch.setattr(py_aimio, "read_isq", lambda *a, **k: pytest.fail("aimio-py was called"))
    with pytest.raises(VbmdError, match="byte count 2147483647 disagrees"):
        read_scan(tmp_path / "big.isq")


def test_isq_from_a_clone_without_shared_data_reads(tmp_path):
    from fuzz_seeds import _calibrated_scan, _synthetic_isq

    scan = read_scan(_synthetic_isq(tmp_path / "s.isq", _calibrated_scan()))
    assert scan.spacing == pytest.approx((0.082,) * 3) and scan.calibration is None


# -- item 3: a calibration whose ratio overflows ------------------------------------------------------------
def test_mu_scaling_1e_320_is_refused_naming_the_file(tmp_path, capsys):
    """Finite numbers whose ratio is not: D100 was inf, exit 0."""
    image, mask = calibrated_pair(tmp_path)
    raw = image.read_bytes()
    line = f"{'Mu_Scaling':<30}{8192:>20}".encode()
    assert raw.count(line) == 1
    image.write_bytes(raw.replace(line, f"{'Mu_Scaling':<30}{'1e-320':>20}".encode()))
    err = assert_refused(capsys, "measure", image, mask, words="calibration is unusable")
    assert str(image) in err and "no finite density per stored value" in err
    assert_refused(capsys, "info", image, words="mu scaling 1e-320")


# -- item 6: a mask of another measurement -----------------------------------------------------------------
def test_mask_of_another_measurement_on_the_same_grid_is_refused(tmp_path, capsys):
    image, _ = calibrated_pair(tmp_path / "a", log=scanco_log("PATIENT_A", 7))
    _, other_mask = calibrated_pair(tmp_path / "b", log=scanco_log("PATIENT_B", 8, "DK0:[DATA]C0000008.ISQ;1"),
                                    seed=1)
    err = assert_refused(capsys, "measure", image, other_mask, words="names another measurement")
    assert "Index Measurement '8' vs the scan's '7'" in err and "Patient Name" in err and "--allow-other-scan" in err
    code, out, _ = run_cli(capsys, "measure", image, other_mask, "--allow-other-scan")
    assert code == 0 and "note" in out and "measured as asked (--allow-other-scan)" in out


def test_mask_written_from_its_scan_matches_and_phantoms_name_their_seed(tmp_path):
    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

    image, mask = calibrated_pair(tmp_path)
    assert identity_mismatch(read_mask(mask), read_scan(image)) is None
    paths = [write_phantom(generate_phantom(PhantomSpec(seed=s, n_slices=16, spacing_mm=0.25)), tmp_path, f"p{s}")
             for s in (1, 2)]
    assert scan_identity(read_scan(paths[0]["mask"]))["Patient Name"] == "PHANTOM_1"
    one, two = read_scan(paths[0]["image"]), read_mask(paths[1]["mask"])
    with pytest.raises(VbmdError, match="names another measurement"):  # checked before the grids are compared
        measure_vbmd(one, two)
    assert identity_mismatch(two, one) == ("names another measurement than the scan: Patient Name 'PHANTOM_2' vs "
                                           "the scan's 'PHANTOM_1'")


def test_real_scanner_logs_name_their_measurements(scanco_dir):
    aluminum = scan_identity(read_scan(scanco_dir / "aluminum.aim"))
    radius = scan_identity(read_scan(scanco_dir / "XT2_RADIUS_82_SEG.AIM"))
    assert aluminum == {"Original file": "c0002861.isq",
                        "Index Measurement": "3553", "Index Patient": "968", "Patient Name": "IGFA_ALUM_01"}
    assert radius["Index Measurement"] == "50" and radius["Original file"] == "d0000068.isq"
    assert "Original file" not in scan_identity(read_scan(scanco_dir / "tube.aim"))  # made from a .gobj: not a scan
    assert identity_mismatch(read_mask(scanco_dir / "XT2_RADIUS_82_SEG.AIM"), read_scan(scanco_dir / "aluminum.aim"))


# -- item 7: GOBJ ---------------------------------------------------------------------------------------------
def test_gobj_contours_fill_like_aimio_in_linear_time(tmp_path, monkeypatch):
    """The same voxels as aimio-py's reader on random chain-code contours; its quadratic filler is never
    called (a 20,000-step contour took 89 s in it)."""
    import py_aimio
    from py_aimio import gobj as aimio_gobj

    for seed in range(8):
        path = gobj_seed(tmp_path / f"c{seed}.gobj", seed=seed, n_slices=3, radius=4.0 + 3 * seed)
        expected, _ = py_aimio.read_gobj(str(path), value=1, crop="tight")
        np.testing.assert_array_equal(read_mask(path).data, (np.asarray(expected) != 0).astype(np.uint8))

    def quadratic(*args, **kwargs):
        raise AssertionError("aimio-py's quadratic contour filler was called")

    monkeypatch.setattr(aimio_gobj, "_rasterize_filled_contour", quadratic)
    long_contour = gobj_seed(tmp_path / "long.gobj", seed=1, n_slices=1, radius=600.0)
    mask = read_mask(long_contour)
    assert mask.data.sum() > 100_000 and mask.spacing == pytest.approx((0.082,) * 3)


def test_gobj_sizes_are_checked_before_any_voxel_is_allocated(tmp_path):
    path = gobj_seed(tmp_path / "c.gobj", seed=0, n_slices=2)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<2i", raw, 512 + 52 + 20, 2**30, 2**30)  # the first contour's width and height
    path.write_bytes(bytes(raw))
    with pytest.raises(VbmdError, match="beyond any scan"):
        read_mask(path)
    raw = bytearray(gobj_seed(tmp_path / "d.gobj", seed=0, n_slices=2).read_bytes())
    struct.pack_into("<3i", raw, 44, 0, 0, 0)  # no field of view in um: no voxel size
    (tmp_path / "d.gobj").write_bytes(bytes(raw))
    with pytest.raises(VbmdError, match="states no voxel size"):
        read_mask(tmp_path / "d.gobj")
