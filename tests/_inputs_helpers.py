"""Small hostile and valid inputs for the tests of issue 21 (made by the tests, nothing downloaded)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from napari_vbmd import Calibration, Scan
from napari_vbmd.cli import main
from napari_vbmd.io import write_mask
from napari_vbmd.io.aim import write_aim

CALIBRATION = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192, mu_water=0.2464)


def scanco_log(patient: str = "PATIENT_A", measurement: int = 7, original: str = "DK0:[DATA]C0000007.ISQ;1") -> str:
    return ("! Processing Log\n!\n"
            f"{'Original file':<30}{original:<50}\n"
            f"{'Patient Name':<30}{patient:<50}\n"
            f"{'Index Measurement':<30}{measurement:>20}\n")


def calibrated_pair(folder: Path, name: str = "scan", log: str | None = None, seed: int = 0,
                    shape=(6, 20, 24)) -> tuple[Path, Path]:
    """A calibrated int16 AIM and its char-127 mask AIM (written from it, so with its log)."""
    rng = np.random.default_rng(seed)
    data = rng.integers(200, 900, size=shape).astype(np.int16)
    data[:, 5:15, 6:18] += 2500
    header = {"format": "aim", "processing_log": log if log is not None else scanco_log()}
    scan = Scan(data=data, spacing=(0.082,) * 3, origin=(0.0, 0.0, 0.0), calibration=CALIBRATION, unit="native",
                header=header)
    folder.mkdir(parents=True, exist_ok=True)
    image = write_aim(folder / f"{name}.aim", scan)
    mask = scan.with_data((data > 2000).astype(np.uint8), kind="mask", unit="unknown")
    return image, write_mask(folder / f"{name}_mask.aim", mask, parent=scan)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def assert_refused(capsys, *argv, words: str = "") -> str:
    """The command exits 2 with exactly one line ``vbmd CMD: error: ...`` holding ``words``."""
    code, _, err = run_cli(capsys, *argv)
    assert code == 2, err
    assert len(err.splitlines()) == 1 and ": error: " in err and "internal error" not in err, err
    assert words in err, err
    return err


def assert_segment_refused(capsys, tmp_path: Path, image, name: str, words: str) -> str:
    """``vbmd segment`` of ``image`` (written as ``tmp_path/in/name``) with the classical method and the left hand
    given is refused (:func:`assert_refused`): the line names the file and no output folder is made."""
    from napari_vbmd.io import write_image

    (tmp_path / "in").mkdir()
    path = write_image(tmp_path / "in" / name, image)
    out = tmp_path / "out"
    err = assert_refused(capsys, "segment", path, "-o", out / "mask.aim", "--model", "classical", "--hand", "left",
                         words=words)
    assert name in err and not out.exists(), err
    return err


def json_of(out: str) -> dict:
    return json.loads(out)


def dicom_series(folder: Path, n: int = 4, shape=(16, 20), edit=None, spacing=(0.5, 0.5), dz: float = 1.0) -> Path:
    """A CT series of ``n`` slices; ``edit(k, ds)`` may change slice k's dataset before it is saved."""
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for k in range(n):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{k + 1}"
        ds.SeriesInstanceUID, ds.Modality = "1.2.826.0.1.3680043.8.498.1", "CT"
        ds.Rows, ds.Columns = shape
        ds.PixelSpacing = list(spacing)
        ds.ImageOrientationPatient = [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, dz * k]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1000
        ds.PixelData = rng.integers(0, 2000, size=shape).astype("<i2").tobytes()
        if edit is not None:
            edit(k, ds)
        ds.save_as(str(folder / f"slice{k:03d}.dcm"), enforce_file_format=True)
    return folder
