"""Hostile and foreign files are refused with one clear line; nothing crashes or over-allocates."""
from __future__ import annotations

import json
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan, VbmdError
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.io.aim import write_aim


def small_aim(tmp_path, version=30, mask=False):
    cal = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192, mu_water=0.2464)
    data = np.arange(4 * 5 * 6, dtype=np.int16).reshape(4, 5, 6)
    scan = Scan(data=data, spacing=(0.082,) * 3, origin=(0.082, 0.164, 0.246), calibration=cal, unit="native")
    if mask:
        scan = scan.with_data((data % 3 == 0).astype(np.uint8), kind="mask", unit="unknown")
    return write_aim(tmp_path / f"small_v{version}{'_mask' if mask else ''}.aim", scan, version=version)


def assert_one_line_error(path, match):
    with pytest.raises(VbmdError) as info:
        read_scan(path)
    text = str(info.value)
    assert "\n" not in text
    assert str(path) in text
    assert match in text


@pytest.mark.parametrize("version", [20, 30])
def test_truncated_aim(tmp_path, version):
    path = small_aim(tmp_path, version)
    raw = path.read_bytes()
    cut = tmp_path / "cut.aim"
    cut.write_bytes(raw[: len(raw) - 17])
    assert_one_line_error(cut, "truncated")


def test_wrong_magic(tmp_path):
    path = tmp_path / "fake.aim"
    path.write_bytes(b"PK\x03\x04" + b"\x00" * 400)
    assert_one_line_error(path, "not an AIM")


def test_text_file_with_aim_name(tmp_path):
    path = tmp_path / "notes.aim"
    path.write_text("these are not voxels\n" * 20)
    assert_one_line_error(path, "not an AIM")


def test_header_dimensions_larger_than_file(tmp_path):
    path = small_aim(tmp_path, 20)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<3i", raw, 20 + 36, 4000, 4000, 4000)  # dim in the v020 image struct
    bad = tmp_path / "huge.aim"
    bad.write_bytes(bytes(raw))
    assert_one_line_error(bad, "corrupt")


def test_compressed_dimensions_larger_than_data_can_hold(tmp_path):
    path = small_aim(tmp_path, 30, mask=True)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<3q", raw, 16 + 40 + 40, 100000, 100000, 1000)
    bad = tmp_path / "huge_mask.aim"
    bad.write_bytes(bytes(raw))
    assert_one_line_error(bad, "larger than")


def test_unknown_type(tmp_path):
    path = small_aim(tmp_path, 20)
    raw = bytearray(path.read_bytes())
    struct.pack_into("<i", raw, 20 + 20, (9 << 16) + 8)
    bad = tmp_path / "type.aim"
    bad.write_bytes(bytes(raw))
    assert_one_line_error(bad, "unsupported AIM data type")


def test_empty_file(tmp_path):
    for name in ("empty.aim", "empty.nii", "empty.tif", "empty.isq"):
        path = tmp_path / name
        path.write_bytes(b"")
        assert_one_line_error(path, "empty")


def test_folder_of_unrelated_files(tmp_path):
    folder = tmp_path / "stuff"
    folder.mkdir()
    (folder / "a.txt").write_text("hello")
    (folder / "b.csv").write_text("1,2,3")
    with pytest.raises(VbmdError, match="no DICOM series"):
        read_scan(folder)
    empty = tmp_path / "nothing"
    empty.mkdir()
    with pytest.raises(VbmdError, match="empty"):
        read_scan(empty)


def test_missing_file(tmp_path):
    assert_one_line_error(tmp_path / "nope.aim", "no such file")


def test_truncated_isq_and_foreign_gobj(tmp_path):
    header = bytearray(512)
    header[:16] = b"CTDATA-HEADER_V1"
    struct.pack_into("<i", header, 16, 3)
    struct.pack_into("<3i", header, 44, 1536, 1536, 110)
    struct.pack_into("<3i", header, 56, 125952, 125952, 9020)
    isq = tmp_path / "scan.isq"
    isq.write_bytes(bytes(header) + b"\0" * 1000)
    assert_one_line_error(isq, "truncated")
    gobj = tmp_path / "contour.gobj"
    gobj.write_bytes(b"garbage" * 50)
    assert_one_line_error(gobj, "not a GOBJ")


def test_truncated_nifti(tmp_path):
    import nibabel as nib

    path = tmp_path / "x.nii"
    nib.save(nib.Nifti1Image(np.ones((20, 20, 20), np.float32), np.eye(4)), str(path))
    raw = path.read_bytes()
    path.write_bytes(raw[:1000])
    assert_one_line_error(path, "truncated")


def test_mask_of_other_scan_is_refused(tmp_path):
    path = small_aim(tmp_path, 30, mask=True)
    other = Scan(data=np.zeros((4, 5, 6), np.int16), spacing=(0.061,) * 3, unit="native",
                 calibration=Calibration(1, 0))
    with pytest.raises(VbmdError, match="voxel size"):
        read_mask(path, like=other)


FUZZ_SCRIPT = textwrap.dedent(
    """
    import json, os, resource, sys
    import numpy as np
    # Cap the address space: a reader that believed a lying header would hit it.
    soft = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_AS, (soft, soft))
    from napari_vbmd.errors import VbmdError
    from napari_vbmd.io import read_scan
    src = open(sys.argv[1], "rb").read()
    rng = np.random.default_rng(int(sys.argv[2]))
    out = sys.argv[4]
    counts = {"read": 0, "refused": 0, "other": []}
    header_len = min(len(src), 400)
    for i in range(int(sys.argv[5])):
        raw = bytearray(src)
        for _ in range(rng.integers(1, 6)):
            pos = int(rng.integers(0, header_len))
            choice = rng.integers(0, 3)
            if choice == 0:
                raw[pos] = int(rng.integers(0, 256))
            elif choice == 1:
                raw[pos:pos + 4] = int(rng.integers(-2**31, 2**31)).to_bytes(4, "little", signed=True)
            else:
                raw[pos:pos + 8] = int(rng.integers(0, 2**63)).to_bytes(8, "little")
        if rng.random() < 0.2:
            raw = raw[: int(rng.integers(0, len(raw)))]
        with open(out, "wb") as fh:
            fh.write(raw)
        try:
            scan = read_scan(out)
            assert scan.data.nbytes <= 256 * max(len(raw), 1) * 4, "array larger than the file can encode"
            counts["read"] += 1
        except VbmdError as exc:
            assert "\\n" not in str(exc)
            counts["refused"] += 1
        except Exception as exc:  # anything else is a finding
            counts["other"].append(f"{type(exc).__name__}: {exc}")
    print(json.dumps(counts))
    """
)


@pytest.mark.parametrize("version, mask", [(20, False), (30, False), (30, True), (20, True)])
def test_fuzzed_aim_headers_never_crash_or_overallocate(tmp_path, version, mask):
    path = small_aim(tmp_path, version, mask=mask)
    script = tmp_path / "fuzz.py"
    script.write_text(FUZZ_SCRIPT)
    limit = 1536 * 1024 * 1024  # generous for the interpreter + numpy, tiny next to a lying header
    proc = subprocess.run(
        [sys.executable, str(script), str(path), str(version), str(limit), str(tmp_path / "m.aim"), "250"],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, f"fuzz process died ({proc.returncode}): {proc.stderr[-2000:]}"
    counts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert counts["other"] == []
    assert counts["read"] + counts["refused"] == 250
    assert counts["refused"] > 50  # the mutations do hit the header
