"""One model reference (models.resolve/load, one cache), the classical method behind a network's
interface, and SegmentSettings checked once."""
from __future__ import annotations

import pytest

from napari_vbmd.batch import BatchSettings, model_identity
from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation import models
from napari_vbmd.segmentation.settings import SegmentSettings
from napari_vbmd.util import sha256_files


def test_resolve_names_files_and_sha256_without_loading():
    ref = models.resolve("default")
    assert ref.name == "default" and [p.suffix for p in ref.files] == [".json", ".safetensors"]
    assert ref.sha256 == sha256_files(ref.files) and len(ref.sha256) == 64
    assert model_identity("default")["sha256"] == ref.sha256  # the batch compares the same hash
    assert models.resolve(ref) is ref
    classical = models.resolve("classical")
    assert classical.classical and classical.files == () and classical.sha256.startswith("classical-")
    with pytest.raises(VbmdError, match="unknown model 'resnet9000'"):
        models.resolve("resnet9000")
    with pytest.raises(VbmdError, match="no trained weights are bundled for 'unet3d'"):
        models.resolve("unet3d")


def test_one_cache_per_checkpoint_and_device_and_a_changed_file_is_refused(tmp_path):
    import shutil

    first = models.load(models.resolve("default"), "cpu")
    assert models.load("default", "cpu") is first and models.is_loaded(models.resolve("default"), "cpu")
    copy = tmp_path / "copy"
    for suffix in (".json", ".safetensors"):
        shutil.copy(models.DEFAULT_CHECKPOINT.with_suffix(suffix), copy.with_suffix(suffix))
    ref = models.resolve(copy)
    assert ref.sha256 == first.sha256 and models.load(ref, "cpu") is first  # same files, same model
    stale = models.ModelRef(str(copy), "copy", ref.files, "0" * 64)
    with pytest.raises(VbmdError, match="differs from the one the batch started with"):
        models.load(stale, "cpu")


def test_the_classical_method_has_a_networks_interface():
    classical = models.load("classical", "cpu")
    network = models.load("default", "cpu")
    for attribute in ("name", "device", "threshold", "crop_margin_mm", "dims", "working_spacing", "predict", "band_for"):
        assert hasattr(classical, attribute) and hasattr(network, attribute)
    assert classical.band_for(0.5) == 0.0 and network.band_for(None) == network.config.boundary_band_mm
    assert network.band_for(0.0) == 0.0
    assert classical.working_spacing((0.082, 0.082, 0.082)) == (0.082, 0.12, 0.12)


@pytest.mark.parametrize("bad, message", [
    ({"hand": "both"}, "hand must be auto, left or right"),
    ({"hole_filling": "magic"}, "hole filling must be one of"),
    ({"voi_mm": -3}, "VOI length must be a positive number"),
    ({"threads": 0}, "threads must be at least 1"),
    ({"batch_size": 0}, "batch size must be at least 1"),
    ({"boundary_band_mm": 5}, "boundary refinement band must be between 0 and 2"),
    ({"slice_range": "3-9"}, "slice range must look like A:B"),
    ({"device": "tpu"}, "unknown device 'tpu'"),
])
def test_segment_settings_refuse_bad_values_in_one_line(bad, message):
    with pytest.raises(VbmdError, match=message):
        SegmentSettings(**bad)
    batch_names = {"threads": "torch_threads", "hand": "hand", "hole_filling": "hole_filling", "voi_mm": "voi_mm",
                   "boundary_band_mm": "boundary_band_mm", "device": "device"}
    if set(bad) <= set(batch_names):  # the batch builds the same object, so refuses the same way
        with pytest.raises(VbmdError, match=message):
            BatchSettings(**{batch_names[k]: v for k, v in bad.items()})


def test_batch_settings_embed_segment_settings_and_keep_their_result_key():
    settings = BatchSettings(model="classical", hand="left", voi_mm=10, torch_threads=2, mask_format="nii.gz")
    assert settings.segmentation == SegmentSettings(model="classical", hand="left", voi_mm=10.0, threads=2)
    assert settings.result_key() == {"hand": "left", "voi_mm": 10.0, "hole_filling": "fill", "postprocess": 2,
                                     "mask_format": "nii.gz", "units": None, "slope": None, "intercept": None}
    assert BatchSettings(SegmentSettings(hand="right")).segmentation.hand == "right"
