"""`vbmd segment` end to end on a small synthetic scan written as an AIM."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from napari_vbmd.cli import main
from napari_vbmd.io import read_mask, read_scan, write_image

from _segmentation_synthetic import dice, synthetic_mcp

torch.set_num_threads(1)


@pytest.fixture()
def scan_file(tmp_path):
    scan, truth = synthetic_mcp(hand="left", offset_x=4)
    path = write_image(tmp_path / "case.aim", scan)
    return path, truth


@pytest.mark.parametrize("suffix", [".aim", ".nii.gz", ".tif"])
def test_segment_writes_mask_and_prints_json(scan_file, tmp_path, capsys, suffix):
    image_path, truth = scan_file
    out = tmp_path / f"mask{suffix}"
    code = main(["segment", str(image_path), "-o", str(out), "--model", "classical", "--hand", "left", "--json"])
    assert code == 0
    payload = json.loads(capsys.readouterr().out)
    for key in ("d100_mg_ha_cm3", "sd_mg_ha_cm3", "n_voxels", "volume_mm3", "n_slices", "mean_slice_area_mm2",
                "model", "device", "mask", "timings_s"):
        assert key in payload
    assert set(payload["timings_s"]) == {"read", "load", "preprocess", "inference", "postprocess", "write", "total"}
    assert payload["model"] == "classical" and payload["mask"] == str(out)
    image = read_scan(image_path)
    assert payload["calibration"].endswith("(file)") and payload["calibration"].startswith("density = stored value *")
    assert payload["voxel_size"] == f"{' x '.join(f'{s:g}' for s in image.spacing)} mm (file)"
    mask = read_mask(out, like=image)
    assert mask.shape == image.shape
    assert dice(mask.data, truth) > 0.93
    if suffix == ".aim":
        assert np.isclose(mask.origin, image.origin).all()


def test_segment_table_output_and_voi(scan_file, tmp_path, capsys):
    image_path, _ = scan_file
    code = main(["segment", str(image_path), "-o", str(tmp_path / "m.nii.gz"), "--model", "classical",
                 "--voi-mm", "1.0", "--slices", "0:24"])
    assert code == 0
    text = capsys.readouterr().out
    assert "D100 (mg HA/cm3)" in text and "classical" in text
    slices_line = next(line for line in text.splitlines() if line.startswith("slices"))
    assert slices_line.split()[1] == "10"  # 1.0 mm of 0.1 mm slices


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--model", "nonsense"], "unknown model 'nonsense'"),
        (["--model", "unet2d"], "no trained weights are bundled"),
        (["--model", "unet3d"], "no trained weights are bundled"),
        (["--boundary-band", "-0.5"], "boundary refinement band must be between 0 and 2 mm"),
        (["--boundary-band", "nan"], "boundary refinement band must be between 0 and 2 mm"),
    ],
)
def test_segment_bad_models_are_one_line_errors(scan_file, tmp_path, capsys, extra, message):
    image_path, _ = scan_file
    code = main(["segment", str(image_path), "-o", str(tmp_path / "m.aim"), *extra])
    err = capsys.readouterr().err
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.aim").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_segment_cuda_without_cuda(scan_file, tmp_path, capsys):
    image_path, _ = scan_file
    code = main(["segment", str(image_path), "-o", str(tmp_path / "m.aim"), "--model", "classical", "--device", "cuda"])
    assert code == 2 and "CUDA is not available" in capsys.readouterr().err


def test_segment_never_overwrites_its_input(scan_file, capsys):
    image_path, _ = scan_file
    code = main(["segment", str(image_path), "-o", str(image_path), "--model", "classical"])
    assert code == 2 and "refusing to overwrite an input" in capsys.readouterr().err
