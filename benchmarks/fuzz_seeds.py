"""Valid seed files for benchmarks/fuzz_inputs.py (and the tests): small scans and masks of every
format the readers take, written by this project's writers or, for GOBJ contours (no public sample
exists), in the record layout aimio-py's reader parses. Deterministic: the same seed, the same bytes.
"""
from __future__ import annotations

import json
import shutil
import struct
from pathlib import Path

import numpy as np

GOBJ_MAGIC = b"CTDATA-HEADER_V1"
_SLICE_TAIL = (0, 3, 20, 0, 0, 16512, 16512)
# chain code value v moves (dy, dx) = DIRECTIONS[(v + 2) % 8] in aimio-py's decoder
_DIRECTIONS = ((0, 1), (1, 1), (1, 0), (1, -1), (0, -1), (-1, -1), (-1, 0), (-1, 1))


def chain_codes(points: np.ndarray) -> list[int]:
    """The 3-bit chain codes of an 8-connected closed walk through ``points`` (y, x)."""
    codes = []
    for (y0, x0), (y1, x1) in zip(points, np.roll(points, -1, axis=0)):
        while (y0, x0) != (y1, x1):
            dy, dx = int(np.sign(y1 - y0)), int(np.sign(x1 - x0))
            codes.append((_DIRECTIONS.index((dy, dx)) - 2) % 8)
            y0, x0 = y0 + dy, x0 + dx
    return codes


def blob_outline(rng: np.random.Generator, radius: float, n_vertices: int = 24) -> np.ndarray:
    """Vertices of a wobbly closed outline around (0, 0), as integer (y, x)."""
    angles = np.sort(rng.uniform(0, 2 * np.pi, n_vertices))
    radii = radius * rng.uniform(0.6, 1.0, n_vertices)
    return np.stack([np.round(radii * np.sin(angles)), np.round(radii * np.cos(angles))], axis=1).astype(int)


def _pack_codes(codes: list[int]) -> bytes:
    value, bits, out = 0, 0, bytearray()
    for code in codes:
        value |= code << bits
        bits += 3
        while bits >= 8:
            out.append(value & 0xFF)
            value >>= 8
            bits -= 8
    if bits:
        out.append(value & 0xFF)
    return bytes(out)


def write_gobj_contours(path: Path, contours, dims_xyz, spacing_mm: float) -> Path:
    """``contours``: (z, centre x, centre y, width, height, chain codes), one per slice, in scanner
    voxels: one additive chain-code contour record per slice, as aimio-py's reader documents them."""
    header = bytearray(512)
    header[: len(GOBJ_MAGIC)] = GOBJ_MAGIC
    struct.pack_into("<i", header, 16, 6)
    struct.pack_into("<3i", header, 32, *dims_xyz)
    struct.pack_into("<3i", header, 44, *(int(round(d * spacing_mm * 1000)) for d in dims_xyz))
    body = bytearray()
    for z, cx, cy, width, height, codes in contours:
        payload = _pack_codes(codes)
        body += struct.pack("<13i", 1, cx, cy, z, width, height, *_SLICE_TAIL)
        body += struct.pack("<18i", 1, 3, cx, cy, z, width, height, 0, 3, 32, 0, 0, 16512, 16512, 0, 0,
                            len(codes), len(payload))
        body += payload
    body += bytes(64)
    Path(path).write_bytes(bytes(header) + bytes(body))
    return Path(path)


def gobj_seed(path: Path, seed: int = 0, n_slices: int = 6, radius: float = 12.0, steps_per_vertex: int = 1) -> Path:
    rng = np.random.default_rng(seed)
    contours = []
    for z in range(n_slices):
        outline = blob_outline(rng, radius * steps_per_vertex)
        codes = chain_codes(outline)
        extent = outline.max(axis=0) - outline.min(axis=0) + 1
        contours.append((z + 2, 40, 44, int(extent[1]), int(extent[0]), codes))
    return write_gobj_contours(path, contours, (96, 96, n_slices + 4), 0.082)


def _calibrated_scan(shape=(6, 20, 24), seed: int = 0):
    from napari_vbmd.scan import Calibration, Scan

    rng = np.random.default_rng(seed)
    data = rng.integers(-200, 3000, size=shape).astype(np.int16)
    data[:, 5:15, 6:18] += 2000
    calibration = Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192,
                              mu_water=0.2464)
    return Scan(data=data, spacing=(0.082,) * 3, origin=(0.082 * 9, 0.082 * 700, 0.082 * 680),
                calibration=calibration, unit="native", header={"format": "aim", "processing_log": (
                    "! Processing Log\n!\nPatient Name                  FUZZ_SEED\n"
                    "Index Measurement                                  7\n")})


def write_seeds(folder: Path, shared_data: Path | None = None) -> dict[str, list[Path]]:
    """Seed files per reader in ``folder``: {"aim": [...], "isq": [...], ...}; real files from
    ``shared_data`` (../shared/data) join them when it is there."""
    from napari_vbmd.io import write_image, write_mask
    from napari_vbmd.io.aim import write_aim

    folder.mkdir(parents=True, exist_ok=True)
    scan = _calibrated_scan()
    mask = scan.with_data((scan.data > 1500).astype(np.uint8), kind="mask", unit="unknown")
    seeds: dict[str, list[Path]] = {k: [] for k in ("aim", "isq", "gobj", "dicom", "nifti", "tiff")}
    seeds["aim"] += [write_aim(folder / "image_v30.aim", scan), write_aim(folder / "image_v20.aim", scan, version=20),
                     write_mask(folder / "mask_v30.aim", mask, parent=scan)]
    density = scan.with_data(scan.density(), unit="mg_ha_cm3", calibration=None)
    seeds["nifti"] += [write_image(folder / "image.nii", density), write_image(folder / "image.nii.gz", density),
                       write_mask(folder / "mask.nii.gz", mask)]
    seeds["tiff"] += [write_image(folder / "image.tif", density), write_mask(folder / "mask.tif", mask)]
    import tifffile

    imagej = folder / "imagej.tif"
    tifffile.imwrite(str(imagej), density.data.astype(np.float32), imagej=True, resolution=(1 / 82.0, 1 / 82.0),
                     metadata={"spacing": 82.0, "unit": "um", "axes": "ZYX"})
    seeds["tiff"].append(imagej)
    seeds["gobj"] += [gobj_seed(folder / "contour.gobj", seed=1),
                      gobj_seed(folder / "long.gobj", seed=2, n_slices=2, radius=40.0)]
    if shared_data is not None and (shared_data / "scanco").is_dir():
        seeds["aim"] += [shared_data / "scanco" / name for name in ("test25a.aim", "tube.aim", "XT2_RADIUS_82_SEG.AIM")
                         if (shared_data / "scanco" / name).is_file()]
    if shared_data is not None and (shared_data / "scanco-isq").is_dir():
        seeds["isq"] += sorted((shared_data / "scanco-isq").glob("*.ISQ"))
    if shared_data is not None and (shared_data / "dicom-elscint-ct").is_dir():
        seeds["dicom"].append(shared_data / "dicom-elscint-ct")
    if not seeds["isq"]:
        seeds["isq"].append(_synthetic_isq(folder / "synthetic.isq", scan))
    if not seeds["dicom"]:
        seeds["dicom"].append(_synthetic_dicom(folder / "dicom", scan))
    return seeds


def _synthetic_isq(path: Path, scan) -> Path:
    """A plain ISQ (no extended header) of ``scan``'s values, for clones without ../shared/data."""
    head = bytearray(512)
    head[:16] = GOBJ_MAGIC
    nz, ny, nx = scan.shape
    struct.pack_into("<i", head, 16, 3)
    struct.pack_into("<i", head, 20, 512 + 2 * nx * ny * nz)  # bytes: header and voxels
    struct.pack_into("<3i", head, 44, nx, ny, nz)
    struct.pack_into("<3i", head, 56, *(int(round(n * 82)) for n in (nx, ny, nz)))
    struct.pack_into("<i", head, 88, 8192)
    struct.pack_into("<i", head, 508, 0)
    path.write_bytes(bytes(head) + scan.data.astype("<i2").tobytes())
    return path


def _synthetic_dicom(folder: Path, scan) -> Path:
    import pydicom
    from pydicom.dataset import FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    folder.mkdir(parents=True, exist_ok=True)
    series = generate_uid()
    for k, plane in enumerate(scan.data):
        ds = pydicom.Dataset()
        ds.file_meta = FileMetaDataset()
        ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.2"  # CT Image Storage
        ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = f"1.2.826.0.1.3680043.8.498.2.{k + 1}"
        ds.SeriesInstanceUID, ds.Modality = series, "CT"
        ds.Rows, ds.Columns = plane.shape
        ds.PixelSpacing, ds.ImageOrientationPatient = [0.5, 0.5], [1, 0, 0, 0, 1, 0]
        ds.ImagePositionPatient = [0.0, 0.0, 1.0 * k]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 1
        ds.RescaleSlope, ds.RescaleIntercept = 1, -1000
        ds.PixelData = plane.astype("<i2").tobytes()
        ds.save_as(str(folder / f"slice{k:03d}.dcm"), enforce_file_format=True)
    return folder


def tiny_checkpoint(folder: Path) -> Path:
    """A small unet2d_small checkpoint (NAME.json + NAME.safetensors)."""
    import torch

    from napari_vbmd.segmentation.checkpoint import ModelConfig, save_checkpoint
    from napari_vbmd.segmentation.networks import build_network

    torch.manual_seed(0)
    network = build_network("unet2d_small", base=4, depth=2)
    config = ModelConfig(architecture="unet2d_small", kwargs={"base": 4, "depth": 2}, spacing_mm=(0.5, 0.5, 0.5),
                         mean=300.0, std=400.0, name="fuzz-seed")
    folder.mkdir(parents=True, exist_ok=True)
    config_path, _ = save_checkpoint(folder / "seed", network, config)
    return config_path


def copy_checkpoint(config_path: Path, folder: Path, name: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}.json"
    shutil.copyfile(config_path, target)
    shutil.copyfile(config_path.with_suffix(".safetensors"), target.with_suffix(".safetensors"))
    return target


def config_dict(config_path: Path) -> dict:
    return json.loads(Path(config_path).read_text())
