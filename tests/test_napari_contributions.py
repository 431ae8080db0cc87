"""The npe2 manifest, reader and writers, exercised in a real napari viewer (Xvfb)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_vbmd import Calibration, Scan
from napari_vbmd.io import read_mask, read_scan, write_image, write_mask

REPO = Path(__file__).resolve().parents[1]
CAL = Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192, mu_water=0.2402)


def test_manifest_is_valid_and_installed():
    import npe2

    manifest = npe2.PluginManifest.from_file(REPO / "napari.yaml")
    assert manifest.name == "napari-vbmd"
    pm = npe2.PluginManager.instance()
    pm.discover()
    installed = pm.get_manifest("napari-vbmd")
    ids = {c.id for c in installed.contributions.commands}
    assert {"napari-vbmd.read", "napari-vbmd.write_labels", "napari-vbmd.write_image"} <= ids
    for command in installed.contributions.commands:
        # every python_name resolves to something callable
        module, _, attr = command.python_name.partition(":")
        import importlib

        assert callable(getattr(importlib.import_module(module), attr)), command.python_name


@pytest.fixture
def files(tmp_path):
    data = np.full((6, 30, 40), 2500, np.int16)
    data[:, 10:20, 12:30] = 7000
    scan = Scan(data=data, spacing=(0.082,) * 3, origin=(0.164, 2.46, 4.1), calibration=CAL, unit="native",
                hand="right")
    mask = scan.with_data((data == 7000).astype(np.uint8), kind="mask", unit="unknown")
    return scan, write_image(tmp_path / "scan.aim", scan), write_mask(tmp_path / "scan_mask.aim", mask, parent=scan)


@pytest.mark.gui
def test_reader_opens_scan_in_density_with_geometry(make_napari_viewer, files):
    scan, image_path, mask_path = files
    viewer = make_napari_viewer()
    from napari.layers import Image, Labels

    [image] = viewer.open(str(image_path), plugin="napari-vbmd")
    assert isinstance(image, Image)
    assert np.allclose(image.scale, scan.spacing)
    assert np.allclose(image.translate, scan.origin)
    assert np.allclose(np.asarray(image.data), scan.density(), atol=1e-3)
    assert image.metadata["vbmd"]["calibration"]["density_slope"] == pytest.approx(1632.71997)
    [labels] = viewer.open(str(mask_path), plugin="napari-vbmd")
    assert isinstance(labels, Labels)
    assert np.array_equal(np.asarray(labels.data) != 0, scan.data == 7000)
    # a mask from a file has its own colour, not the model mask's (napari_vbmd.layers)
    from matplotlib.colors import to_rgba

    from napari_vbmd.layers import FILE_MASK_COLOUR

    assert np.allclose(labels.colormap.map(1), to_rgba(FILE_MASK_COLOUR)) and labels.colormap.map(0)[3] == 0
    assert np.allclose(labels.translate, scan.origin)


@pytest.mark.gui
def test_writers_round_trip_geometry_and_log(make_napari_viewer, files, tmp_path):
    scan, image_path, mask_path = files
    viewer = make_napari_viewer()
    [image] = viewer.open(str(image_path), plugin="napari-vbmd")
    [labels] = viewer.open(str(mask_path), plugin="napari-vbmd")
    labels.data[0] = 0  # an edit, as a person would make
    out_mask = tmp_path / "edited_mask.aim"
    labels.save(str(out_mask), plugin="napari-vbmd")
    back = read_mask(out_mask, like=scan)
    assert np.array_equal(back.data, np.asarray(labels.data))
    assert "Density: slope" in read_scan(out_mask).header["processing_log"]
    out_nii = tmp_path / "edited_mask.nii.gz"
    labels.save(str(out_nii), plugin="napari-vbmd")
    assert read_mask(out_nii).origin == pytest.approx(scan.origin, abs=1e-5)
    out_image = tmp_path / "image_copy.aim"
    image.save(str(out_image), plugin="napari-vbmd")
    copy = read_scan(out_image)
    assert copy.data.dtype == np.int16 and np.array_equal(copy.data, scan.data)  # back to native, lossless
    assert copy.origin == pytest.approx(scan.origin)


@pytest.mark.gui
def test_reader_declines_foreign_files(make_napari_viewer, tmp_path):
    from napari_vbmd._reader import get_reader

    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert get_reader(str(text)) is None


@pytest.mark.gui
def test_phantom_sample_opens_as_density_and_truth(make_napari_viewer):
    from napari_vbmd.layers import layer_to_scan
    from napari_vbmd.measure import measure_vbmd

    viewer = make_napari_viewer()
    layers = viewer.open_sample("napari-vbmd", "phantom")
    image, labels = layers
    from napari.layers import Image, Labels

    assert isinstance(image, Image) and isinstance(labels, Labels)
    assert image.data.shape == labels.data.shape and image.data.ndim == 3
    assert np.allclose(image.scale, labels.scale) and np.allclose(image.translate, labels.translate)
    assert image.metadata["vbmd"]["layer_unit"] == "mg_ha_cm3"
    truth = image.metadata["vbmd_truth"]
    # the sample's densities under its truth give the truth's D100: image values are mg HA/cm3
    values = np.asarray(image.data)[np.asarray(labels.data) != 0]
    assert values.mean() == pytest.approx(truth["d100_mg_ha_cm3"], abs=1e-2)
    assert 700 < np.percentile(np.asarray(image.data), 99.9) < 1400  # cortex is there, in density units
    # and the layers rebuild into a scan and mask that the engine measures the same way
    scan = layer_to_scan(image.data, image.metadata, image.scale, image.translate)
    mask = layer_to_scan(labels.data, labels.metadata, labels.scale, labels.translate, kind="mask")
    assert measure_vbmd(scan, mask).d100_mg_ha_cm3 == pytest.approx(truth["d100_mg_ha_cm3"], abs=1e-2)
    assert scan.calibration is not None and scan.hand == "right"
