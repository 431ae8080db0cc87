"""File naming (suffixes, VMS versions, case ids) and the small helpers (JSON values, time stamps,
SHA-256): one definition each, the same answer for every caller."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import yaml

from napari_vbmd import naming
from napari_vbmd.errors import VbmdError
from napari_vbmd.util import input_sha256, jsonable, sha256_file, sha256_files, timestamp

REPO = Path(__file__).resolve().parents[1]


def test_vms_versions_suffixes_and_stems():
    assert naming.strip_vms_version("C0001234.AIM;1") == "C0001234.AIM"
    assert naming.strip_vms_version("C0001234.AIM;") == "C0001234.AIM"
    assert naming.strip_vms_version("odd;name") == "odd;name"
    assert naming.scan_suffix("C0001234.AIM;12") == ".aim"
    assert naming.scan_suffix("hand.NII.GZ") == ".nii.gz"
    assert naming.scan_suffix("hand.tif", naming.BATCH_SCAN_SUFFIXES) is None
    assert naming.scan_stem("sub.01.nii.gz") == "sub.01" and naming.scan_stem(".aim") is None
    assert naming.is_side_file("notes.TXT;2") and not naming.is_side_file("C1.AIM;1")


def test_case_ids_are_the_same_for_every_caller(tmp_path):
    assert naming.case_name("/data/C0001234.AIM;1") == "C0001234"
    assert naming.case_name("/data/sub.01.nii.gz") == "sub.01"  # two visits no longer share "sub"
    assert naming.case_name("/data/1.2.840.1") == "1.2.840.1"  # a DICOM folder named by its UID
    assert naming.case_name(None, "fallback") == "fallback"
    assert naming.relative_case_id(Path("site0/C1.AIM;1")) == "site0/C1"
    assert naming.relative_case_id(Path("site0/C1.nii.gz"), keep_suffix=True) == "site0/C1_nii_gz"
    assert naming.case_id_of(tmp_path / "C1_MASK.AIM;1") == ("C1", True)
    masks = naming.training_mask_candidates(tmp_path, "C1", ".aim")
    assert masks[0] == tmp_path / "C1_mask.aim" and tmp_path / "C1.gobj" in masks


def test_napari_reader_patterns_cover_every_scan_suffix():
    manifest = yaml.safe_load((REPO / "napari.yaml").read_text(encoding="utf-8"))
    patterns = manifest["contributions"]["readers"][0]["filename_patterns"]
    for suffix in naming.SCAN_SUFFIXES:
        assert f"*{suffix}" in patterns, suffix


def test_jsonable_unwraps_numpy_and_nulls_non_finite():
    value = {1: np.float32(2.5), "a": (np.int64(3), float("nan")), "b": np.arange(2), "c": [np.inf]}
    assert jsonable(value) == {"1": 2.5, "a": [3, None], "b": [0, 1], "c": [None]}
    json.dumps(jsonable(value), allow_nan=False)


def test_timestamps_say_their_offset():
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d[+-]\d\d:\d\d", timestamp())
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}\+00:00", timestamp("milliseconds", utc=True))


def test_one_sha256_for_files_and_dicom_folders(tmp_path):
    a = tmp_path / "series" / "a.dcm"
    a.parent.mkdir()
    a.write_bytes(b"first")
    (a.parent / "b.dcm").write_bytes(b"second")
    (a.parent / ".DS_Store").write_bytes(b"ignored")
    assert sha256_file(a) == hashlib.sha256(b"first").hexdigest() == input_sha256(a)
    expected = hashlib.sha256(b"a.dcm\0first" + b"b.dcm\0second").hexdigest()
    assert input_sha256(a.parent) == sha256_files([a, a.parent / "b.dcm"], ["a.dcm", "b.dcm"]) == expected
    from napari_vbmd.export import file_sha256

    assert file_sha256(a.parent) == expected  # a report names a DICOM series as a batch record does
    with pytest.raises(VbmdError, match="cannot read"):
        input_sha256(tmp_path / "missing.aim")
