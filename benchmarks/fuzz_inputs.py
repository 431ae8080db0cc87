"""Fuzz every reader (AIM, ISQ, GOBJ, DICOM, NIfTI, TIFF) and checkpoint configs through the real
entry points, each input in a forked child with a time and a memory limit.

    nice -n 10 python benchmarks/fuzz_inputs.py [--per-reader 300] [--seed 0] [--readers aim,isq,...]
                                                [--time-limit 30] [--memory-gb 3] [--out summary.json]

Seeds are valid files (benchmarks/fuzz_seeds.py, plus the real files in ../shared/data when that
folder is there). Each input is a seed mutated deterministically from (--seed, reader, index): bit
flips, bytes set to extreme values, truncation, zeroed or repeated ranges, header fields set to
extreme or wrong values; for DICOM one slice of a copied series is damaged (bytes, or its tags
through pydicom); for TIFF also the description and ImageJ metadata; for checkpoints the JSON
config's fields (extreme values, wrong types, unknown keys, deep nesting) and the weights file.

Every input goes through ``vbmd info --json`` and ``vbmd measure --json`` (scans against their
seed's mask, masks against their seed's scan); checkpoints through ``load_checkpoint`` and, when
they load, ``vbmd segment`` of a small phantom. Outcomes:

- refused: exit 2 with one line ``vbmd CMD: error: ...`` (a VbmdError; more lines count as an
  internal error);
- accepted: exit 0 and every figure printed is a finite number;
- non-finite: exit 0 with NaN/infinite (null) figures;
- internal error: exit 1 ``internal error``; crash: any other exit, a signal, out of memory;
- hang: still running at the time limit (killed).

The counts go to stdout as a Markdown table and to --out as JSON (with every input that was not
refused or accepted, to reproduce it). docs/robustness.md records a run.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import argparse  # noqa: E402
import gzip  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import resource  # noqa: E402
import shutil  # noqa: E402
import signal  # noqa: E402
import struct  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fuzz_seeds import config_dict, copy_checkpoint, tiny_checkpoint, write_seeds  # noqa: E402

READERS = ("aim", "isq", "gobj", "dicom", "nifti", "tiff", "checkpoint")
OUTCOMES = ("refused", "accepted", "non-finite", "internal error", "crash", "hang")
SLOW_S = 5.0  # inputs slower than this (wall seconds) are listed, to look at
FIGURES = ("d100_mg_ha_cm3", "sd_mg_ha_cm3", "volume_mm3", "mean_slice_area_mm2", "n_voxels")

INT_EXTREMES = (0, -1, 1, 2, 255, 2**15 - 1, -(2**15), 2**31 - 1, -(2**31), 65536, 1_000_000)
FLOAT_EXTREMES = (float("nan"), float("inf"), -float("inf"), 0.0, -0.0, 1e-320, 1e-30, 1e38, -1.0, 1e6)
#: byte offsets of header fields worth setting to extreme values, per format ("<i": int32, ...)
HEADER_FIELDS = {
    "aim20": [(o, "<i") for o in range(0, 20, 4)] + [(20 + o, "<i") for o in range(0, 68, 4)],
    "aim30": [(16 + o, "<q") for o in range(0, 40, 8)] + [(56 + o, "<q") for o in range(0, 88, 8)],
    "isq": [(o, "<i") for o in (16, 20, 24, 28, 44, 48, 52, 56, 60, 64, 68, 72, 76, 88, 112, 508)]
    + [(o, "<i") for o in (512 + 24, 1024 + 24, 1536 + 632)],
    "gobj": [(o, "<i") for o in (16, 32, 36, 40, 44, 48, 52, 508)] + [(512 + o, "<i") for o in range(0, 124, 4)],
    "nifti": [(0, "<i"), (40, "<h"), (42, "<h"), (44, "<h"), (46, "<h"), (48, "<h"), (70, "<h"), (72, "<h"),
              (76, "<f"), (80, "<f"), (84, "<f"), (88, "<f"), (108, "<f"), (112, "<f"), (116, "<f"), (123, "<B"),
              (252, "<h"), (254, "<h"), (256, "<f"), (260, "<f"), (268, "<f"), (280, "<f"), (284, "<f"),
              (296, "<f"), (316, "<f")],
    "tiff": [(4, "<I"), (8, "<H")],
}
DICOM_EDITS = (
    ("PixelSpacing", [[0.5], [0.5, 0.5, 0.5], ["a", "b"], [0, 0.5], [-1, 1], [float("nan"), 1], None]),
    ("ImageOrientationPatient", [[1, 0, 0, 0, 1], [4, 0, 0, 0, 4, 0], [1, 0, 0, 1, 0, 0], [0] * 6, None]),
    ("ImagePositionPatient", [[0, 0], [float("inf"), 0, 0], ["x", 0, 0], None]),
    ("Rows", [0, 1, 65535]), ("Columns", [0, 3, 65535]), ("BitsAllocated", [1, 8, 32, 0]),
    ("SamplesPerPixel", [3, 0]), ("RescaleSlope", [0, float("nan"), 1e38, "x", None]),
    ("RescaleIntercept", [float("inf"), -1e38, None]), ("SeriesInstanceUID", ["1.2.3", None]),
    ("NumberOfFrames", [2, 0]), ("SliceThickness", [0, -3, None]), ("PixelData", [b"", b"\x00" * 7, None]),
)
TIFF_DESCRIPTIONS = (
    {"spacing": "a"}, {"spacing_mm": ["a", 1, 1]}, {"spacing_mm": [0, 1, 1]}, {"spacing_mm": [1, 1]},
    {"spacing_mm": [float("nan"), 1, 1]}, {"spacing_mm": [0.1, 0.1, 0.1], "origin_mm": ["x", 0, 0]},
    {"spacing_mm": [0.1, 0.1, 0.1], "origin_mm": 5}, {"spacing_mm": [1e308, 1e308, 1e308]},
    {"spacing_mm": [0.1, 0.1, 0.1], "unit": ["mg_ha_cm3"]}, {"spacing_mm": "0.1"},
)
IMAGEJ_METADATA = ({"spacing": "x", "unit": "um"}, {"spacing": 0, "unit": "um"}, {"unit": "parsec"},
                   {"spacing": -5, "unit": "mm"}, {"spacing": float("nan"), "unit": "um"}, {})


# -- mutations ---------------------------------------------------------------------------------------------
def mutate_bytes(raw: bytes, rng: np.random.Generator, fields: list) -> tuple[bytes, str]:
    data = bytearray(raw)
    n = len(data)
    op = rng.choice(["flip", "extreme", "truncate", "zero", "repeat", "field", "field", "garbage"])
    if op == "flip" or n == 0:
        k = int(rng.integers(1, 9))
        for _ in range(k):
            if n:
                i = int(rng.integers(n))
                data[i] ^= 1 << int(rng.integers(8))
        return bytes(data), f"flip {k} bits"
    if op == "extreme":
        k = int(rng.integers(1, 5))
        head = min(n, 2048)
        for _ in range(k):
            data[int(rng.integers(head))] = int(rng.choice([0x00, 0xFF, 0x7F, 0x80]))
        return bytes(data), f"{k} header bytes set to extremes"
    if op == "truncate":
        cut = int(rng.integers(0, n))
        return bytes(data[:cut]), f"truncated to {cut} of {n} bytes"
    if op == "zero":
        a = int(rng.integers(n))
        b = min(n, a + int(rng.integers(1, 4096)))
        data[a:b] = bytes(b - a)
        return bytes(data), f"bytes {a}-{b} zeroed"
    if op == "repeat":
        a = int(rng.integers(n))
        b = min(n, a + int(rng.integers(1, 2048)))
        return bytes(data[:b] + data[a:b] + data[b:]), f"bytes {a}-{b} repeated"
    if op == "garbage":
        extra = rng.integers(0, 256, int(rng.integers(1, 4096)), dtype=np.uint8).tobytes()
        return bytes(data) + extra, f"{len(extra)} bytes appended"
    offset, fmt = fields[int(rng.integers(len(fields)))]
    size = struct.calcsize(fmt)
    if offset + size > n:
        return bytes(data[: max(0, n - 1)]), "truncated by one byte"
    if fmt in ("<f", "<d"):
        value = FLOAT_EXTREMES[int(rng.integers(len(FLOAT_EXTREMES)))]
    else:
        value = INT_EXTREMES[int(rng.integers(len(INT_EXTREMES)))]
        bits = 8 * size
        signed = fmt[-1].islower()
        lo, hi = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
        value = int(min(max(value, lo), hi))
    struct.pack_into(fmt, data, offset, value)
    return bytes(data), f"header field at byte {offset} ({fmt}) set to {value!r}"


def _file_fields(kind: str, raw: bytes) -> list:
    if kind == "aim":
        return HEADER_FIELDS["aim30" if raw.startswith(b"AIMDATA_V030") else "aim20"]
    return HEADER_FIELDS.get(kind, [(0, "<i")])


def mutate_file(kind: str, seed: Path, work: Path, rng) -> tuple[Path, str]:
    raw = seed.read_bytes()
    name = seed.name
    if name.endswith(".nii.gz") and rng.random() < 0.6:  # reach the header inside the gzip stream
        inner, how = mutate_bytes(gzip.decompress(raw), rng, HEADER_FIELDS["nifti"])
        out = work / name
        out.write_bytes(gzip.compress(inner, mtime=0))
        return out, f"{seed.name}: inside gzip: {how}"
    if kind == "tiff" and rng.random() < 0.35:
        return _tiff_metadata(seed, work, rng)
    mutated, how = mutate_bytes(raw, rng, _file_fields(kind, raw))
    out = work / name
    out.write_bytes(mutated)
    return out, f"{seed.name}: {how}"


def _tiff_metadata(seed: Path, work: Path, rng) -> tuple[Path, str]:
    import tifffile

    data = tifffile.imread(str(seed))
    out = work / seed.name
    if rng.random() < 0.5:
        description = TIFF_DESCRIPTIONS[int(rng.integers(len(TIFF_DESCRIPTIONS)))]
        tifffile.imwrite(str(out), data, description=json.dumps(description), metadata=None, photometric="minisblack")
        return out, f"{seed.name}: description {json.dumps(description)}"
    metadata = IMAGEJ_METADATA[int(rng.integers(len(IMAGEJ_METADATA)))]
    if rng.random() < 0.3:  # a 2-D RGB picture
        rgb = (rng.random((40, 32, 3)) * 255).astype(np.uint8)
        tifffile.imwrite(str(out), rgb, photometric="rgb")
        return out, "2-D RGB picture"
    tifffile.imwrite(str(out), data.astype(np.float32), imagej=True, resolution=(1 / 82.0, 1 / 82.0),
                     metadata={**metadata, "axes": "ZYX"})
    return out, f"{seed.name}: ImageJ metadata {metadata}"


def mutate_dicom(seed: Path, work: Path, rng) -> tuple[Path, str]:
    import pydicom

    folder = work / "series"
    shutil.copytree(seed, folder)
    files = sorted(p for p in folder.iterdir() if p.is_file())
    victim = files[int(rng.integers(len(files)))]
    if rng.random() < 0.45:
        mutated, how = mutate_bytes(victim.read_bytes(), rng, [(0, "<i"), (4, "<i"), (8, "<i"), (128, "<i")])
        victim.write_bytes(mutated)
        return folder, f"{victim.name}: {how}"
    ds = pydicom.dcmread(str(victim), force=True)
    keyword, values = DICOM_EDITS[int(rng.integers(len(DICOM_EDITS)))]
    value = values[int(rng.integers(len(values)))]
    try:
        if value is None:
            if keyword in ds:
                delattr(ds, keyword)
        else:
            setattr(ds, keyword, value)
        ds.save_as(str(victim))
    except Exception as exc:  # pydicom would not write it: the edit is not a file anybody has
        return folder, f"{victim.name}: {keyword} = {value!r} not writable ({type(exc).__name__}); unchanged"
    return folder, f"{victim.name}: {keyword} = {value!r}"


def _fifo(reader: str, source: Path, work: Path) -> tuple[Path, str]:
    if reader == "checkpoint":
        path = copy_checkpoint(source, work, "model")
        path.unlink()
        os.mkfifo(path)
        return path, "config is a FIFO"
    if reader == "dicom":
        folder = work / "series"
        shutil.copytree(source, folder)
        os.mkfifo(folder / "zz_fifo.dcm")
        return folder, "a FIFO among the slices"
    path = work / source.name
    os.mkfifo(path)
    return path, "a FIFO named like the seed"


def _config_paths(data, prefix=()):
    if isinstance(data, dict):
        for key, value in data.items():
            yield prefix + (key,)
            yield from _config_paths(value, prefix + (key,))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            yield prefix + (i,)
            yield from _config_paths(value, prefix + (i,))


def mutate_checkpoint(seed: Path, work: Path, rng) -> tuple[Path, str]:
    path = copy_checkpoint(seed, work, "model")
    config = config_dict(path)
    op = rng.choice(["value", "value", "value", "delete", "unknown", "nest", "kwargs", "weights", "raw"])
    if op == "weights":
        return path, _mutate_weights(path.with_suffix(".safetensors"), rng)
    if op == "raw":
        mutated, how = mutate_bytes(path.read_bytes(), rng, [(0, "<B")])
        path.write_bytes(mutated)
        return path, f"config bytes: {how}"
    if op == "kwargs":
        key = str(rng.choice(["members", "base", "depth", "in_channels", "norm", "encoder_weights_path",
                              "imagenet_online", "first_stage_dropout"]))
        value = [100_000, 1.5, -1, 0, True, "x", "../../etc/passwd", None, 2**40, [1]][int(rng.integers(10))]
        config["kwargs"][key] = value
        how = f"kwargs {key} = {value!r}"
    elif op == "nest":
        depth = int(rng.choice([40, 1000, 100_000]))
        config["training"] = "__DEEP__"
        text = json.dumps(config).replace('"__DEEP__"', '{"deep": ' + "[" * depth + "]" * depth + "}")
        path.write_text(text)
        return path, f"training record nested {depth} deep"
    elif op == "unknown":
        config["surprise"] = 1
        how = "unknown key added"
    else:
        paths = list(_config_paths(config))
        target = paths[int(rng.integers(len(paths)))]
        parent = config
        for key in target[:-1]:
            parent = parent[key]
        if op == "delete" and isinstance(parent, dict):
            del parent[target[-1]]
            how = f"{'/'.join(map(str, target))} deleted"
        else:
            choices = [*FLOAT_EXTREMES, *INT_EXTREMES, 1e-4, 1e-9, "x", None, [], {}, True, [1e-4] * 3, [0.5] * 2]
            value = choices[int(rng.integers(len(choices)))]
            parent[target[-1]] = value
            how = f"{'/'.join(map(str, target))} = {value!r}"
    path.write_text(json.dumps(config, allow_nan=True))
    return path, how


def _mutate_weights(weights: Path, rng) -> str:
    import torch
    from safetensors.torch import load_file, save_file

    state = load_file(str(weights))
    how = rng.choice(["int8", "bool", "float16", "nan", "shape", "drop", "truncate"])
    key = sorted(state)[int(rng.integers(len(state)))]
    if how == "truncate":
        raw = weights.read_bytes()
        weights.write_bytes(raw[: int(rng.integers(len(raw)))])
        return "weights file truncated"
    if how == "int8":
        state[key] = state[key].to(torch.int8)
    elif how == "bool":
        state[key] = state[key] != 0
    elif how == "float16":
        state[key] = state[key].to(torch.float16)
    elif how == "nan":
        state[key] = torch.full_like(state[key], float("nan")) if state[key].is_floating_point() else state[key]
    elif how == "shape":
        state[key] = torch.zeros(3, 5)
    else:
        del state[key]
    save_file(state, str(weights))
    return f"weights {key}: {how}"


# -- running one input ---------------------------------------------------------------------------------------
def _child(argv_list, python_call, out_file: Path, memory_bytes: int, cpu_s: int) -> None:
    """In the forked child: limits, then each command; never returns."""
    try:
        os.setsid()
        resource.setrlimit(resource.RLIMIT_AS, (memory_bytes, memory_bytes))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s + 5))
        results = []
        for argv in argv_list:
            results.append(_run_cli(argv, out_file))
            if results[-1]["exit"] != 0 and argv and argv[0] == "load":
                break
        out_file.write_text(json.dumps(results))
        os._exit(0)
    except BaseException:  # noqa: BLE001 - whatever happens, the parent classifies by the exit status
        os._exit(70)


def _run_cli(argv, out_file: Path) -> dict:
    import contextlib
    import io

    stdout, stderr = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        if argv[0] == "load":
            code = _load_checkpoint(argv[1])
        else:
            from napari_vbmd.cli import main

            try:
                code = main(argv)
            except SystemExit as exc:  # argparse
                code = exc.code if isinstance(exc.code, int) else 2
    return {"argv": argv, "exit": code, "stdout": stdout.getvalue()[-20000:], "stderr": stderr.getvalue()[-4000:]}


def _load_checkpoint(path: str) -> int:
    from napari_vbmd.errors import VbmdError
    from napari_vbmd.segmentation.checkpoint import load_checkpoint

    try:
        load_checkpoint(path)
    except VbmdError as exc:
        print(f"vbmd load: error: {exc}", file=sys.stderr)
        return 2
    except MemoryError:
        print("vbmd load: error: out of memory", file=sys.stderr)
        return 1
    except Exception as exc:  # noqa: BLE001
        print(f"vbmd load: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1
    return 0


def run_input(argv_list, time_limit: float, memory_bytes: int) -> tuple[str, list, float]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        out_file = Path(fh.name)
    started = time.perf_counter()
    pid = os.fork()
    if pid == 0:
        _child(argv_list, None, out_file, memory_bytes, int(time_limit) + 5)
    deadline = started + time_limit
    status = None
    while time.perf_counter() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            break
        time.sleep(0.02)
    else:
        with _suppress():
            os.killpg(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        out_file.unlink(missing_ok=True)
        return "hang", [], time.perf_counter() - started
    elapsed = time.perf_counter() - started
    try:
        results = json.loads(out_file.read_text())
    except (OSError, ValueError):
        results = []
    out_file.unlink(missing_ok=True)
    if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0 or not results:
        why = f"signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status) else f"status {os.WEXITSTATUS(status)}"
        return "crash", [{"child": why}], elapsed
    return classify(results), results, elapsed


class _suppress:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return exc[0] is not None and issubclass(exc[0], OSError)


def _figures_finite(payload) -> bool:
    """Every measured figure (and per-slice profile value) in a command's JSON is a finite number;
    the CLI prints NaN and infinities as null."""
    if isinstance(payload, dict):
        for key, value in payload.items():
            if key in FIGURES or key in ("area_mm2", "density_mg_ha_cm3"):
                values = value if isinstance(value, list) else [value]
                if any(isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) for v in values):
                    return False
            elif isinstance(value, (dict, list)) and not _figures_finite(value):
                return False
    elif isinstance(payload, list):
        return all(_figures_finite(v) for v in payload)
    return True


def classify(results: list) -> str:
    worst = "refused"
    rank = {o: i for i, o in enumerate(OUTCOMES)}
    for r in results:
        code, err = r["exit"], r["stderr"].strip()
        if code == 0:
            try:
                payload = json.loads(r["stdout"]) if r["stdout"].strip() else {}
            except ValueError:
                payload = {}
            outcome = "accepted" if _figures_finite(payload) else "non-finite"
        elif code == 2 and ": error: " in err and "internal error" not in err and len(err.splitlines()) == 1:
            outcome = "refused"
        elif code == 1 and "internal error" in err:
            outcome = "internal error"
        elif code == 2 and ": error: " in err:
            outcome = "internal error"  # refused, but not in one line (a traceback, a library's chatter)
        else:
            outcome = "crash"
        if outcome == "accepted" and worst == "refused":
            worst = "accepted"
        elif rank[outcome] > rank[worst]:
            worst = outcome
    return worst


# -- the campaign ---------------------------------------------------------------------------------------------
def commands(kind: str, path: Path, seed: Path, partners: dict) -> list[list[str]]:
    if kind == "checkpoint":
        return [["load", str(path)], ["segment", str(partners["phantom"]), "-o", str(path.parent / "out.nii.gz"),
                                      "--model", str(path), "--device", "cpu", "--threads", "1", "--json"]]
    info = ["info", str(path), "--json"]
    role, partner = partners.get(seed.name, ("image", None))
    extra = list(partners.get("extra", {}).get(kind, []))
    if partner is None:
        return [info]
    measure = (["measure", str(path), str(partner)] if role == "image" else ["measure", str(partner), str(path)])
    return [info, measure + extra + ["--json"]]


def _partners(seeds: dict, folder: Path) -> dict:
    """Which seed is measured with which: an image with its mask, a mask with its image."""
    from napari_vbmd.io import read_scan, write_mask

    pairs = {"image_v30.aim": ("image", folder / "mask_v30.aim"), "image_v20.aim": ("image", folder / "mask_v30.aim"),
             "mask_v30.aim": ("mask", folder / "image_v30.aim"), "image.nii": ("image", folder / "mask.nii.gz"),
             "image.nii.gz": ("image", folder / "mask.nii.gz"), "mask.nii.gz": ("mask", folder / "image.nii.gz"),
             "image.tif": ("image", folder / "mask.tif"), "mask.tif": ("mask", folder / "image.tif"),
             "imagej.tif": ("image", folder / "mask.tif")}
    for isq in seeds["isq"]:
        pairs[isq.name] = ("image", isq)  # the binary fixtures are their own masks (0/1)
    gobj_scan = _gobj_scan(folder)
    for gobj in seeds["gobj"]:
        pairs[gobj.name] = ("mask", gobj_scan)
    for series in seeds["dicom"]:
        scan = read_scan(series)
        mask = scan.with_data((scan.data > np.percentile(scan.data, 90)).astype(np.uint8), kind="mask", unit="unknown")
        pairs[series.name] = ("image", write_mask(folder / "dicom_mask.nii.gz", mask))
    pairs["extra"] = {"dicom": ["--slope", "1", "--intercept", "0"], "tiff": ["--spacing", "0.082", "0.082", "0.082"]}
    return pairs


def _gobj_scan(folder: Path) -> Path:
    """A calibrated AIM at position 0 covering the GOBJ seeds' field, to measure them on."""
    from napari_vbmd.io.aim import write_aim
    from napari_vbmd.scan import Calibration, Scan

    data = np.full((10, 96, 96), 3000, dtype=np.int16)
    scan = Scan(data=data, spacing=(0.082,) * 3, origin=(0.0, 0.0, 0.0), unit="native",
                calibration=Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192))
    return write_aim(folder / "gobj_scan.aim", scan)


def _phantom(folder: Path) -> Path:
    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

    paths = write_phantom(generate_phantom(PhantomSpec(seed=3, n_slices=16, spacing_mm=0.25)), folder, "phantom")
    return paths["image"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--per-reader", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--readers", default=",".join(READERS))
    parser.add_argument("--time-limit", type=float, default=30.0, help="wall seconds per input")
    parser.add_argument("--memory-gb", type=float, default=3.0, help="memory per input beyond the harness's own")
    parser.add_argument("--shared-data", type=Path, default=HERE.parent.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, help="write the summary JSON here")
    parser.add_argument("--keep", type=Path, help="keep the inputs that were not refused or accepted here")
    args = parser.parse_args()
    summary = campaign(args.per_reader, args.seed, [r for r in args.readers.split(",") if r], args.time_limit,
                       args.memory_gb, args.shared_data if args.shared_data.is_dir() else None, args.keep)
    print(markdown(summary))
    if args.out:
        args.out.write_text(json.dumps(summary, indent=1) + "\n")


def campaign(per_reader: int, seed: int, readers: list[str], time_limit: float = 30.0, memory_gb: float = 3.0,
             shared_data: Path | None = None, keep: Path | None = None) -> dict:
    import torch

    import napari_vbmd.cli
    import napari_vbmd.segmentation.pipeline  # noqa: F401

    napari_vbmd.cli.build_parser()  # imports every command's module once here: each child only forks
    import nibabel, pydicom, py_aimio, tifffile  # noqa: E401,F401

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="vbmd-fuzz-") as tmp:
        tmp = Path(tmp)
        seeds = write_seeds(tmp / "seeds", shared_data)
        partners = _partners(seeds, tmp / "seeds")
        seeds["checkpoint"] = [tiny_checkpoint(tmp / "seeds" / "checkpoint")]
        partners["phantom"] = _phantom(tmp / "seeds")
        pages = int(open("/proc/self/statm").read().split()[0])
        memory = pages * os.sysconf("SC_PAGE_SIZE") + int(memory_gb * 2**30)
        summary = {"seed": seed, "per_reader": per_reader, "time_limit_s": time_limit, "memory_gb": memory_gb,
                   "shared_data": str(shared_data) if shared_data else None, "readers": {}}
        for reader in readers:
            counts = dict.fromkeys(OUTCOMES, 0)
            problems, slow, slowest, cpu = [], [], 0.0, time.process_time()
            child_cpu = resource.getrusage(resource.RUSAGE_CHILDREN)
            for index in range(per_reader):
                rng = np.random.default_rng([seed, READERS.index(reader), index])
                work = tmp / "work"
                shutil.rmtree(work, ignore_errors=True)
                work.mkdir()
                source = seeds[reader][int(rng.integers(len(seeds[reader])))]
                if index == 0:  # a FIFO where the file should be: must be refused, never opened
                    path, how = _fifo(reader, source, work)
                elif reader == "dicom":
                    path, how = mutate_dicom(source, work, rng)
                elif reader == "checkpoint":
                    path, how = mutate_checkpoint(source, work, rng)
                else:
                    path, how = mutate_file(reader, source, work, rng)
                outcome, results, elapsed = run_input(commands(reader, path, source, partners), time_limit, memory)
                counts[outcome] += 1
                slowest = max(slowest, elapsed)
                if elapsed > SLOW_S and outcome in ("refused", "accepted"):
                    slow.append({"index": index, "seed_file": source.name, "mutation": how, "outcome": outcome,
                                 "seconds": round(elapsed, 2)})
                if outcome not in ("refused", "accepted"):
                    problems.append({"index": index, "seed_file": source.name, "mutation": how, "outcome": outcome,
                                     "results": [{k: r.get(k) for k in ("argv", "exit", "stderr", "child")}
                                                 for r in results]})
                    if keep:
                        target = keep / reader / f"{index:04d}-{path.name}"
                        target.parent.mkdir(parents=True, exist_ok=True)
                        (shutil.copytree if path.is_dir() else shutil.copyfile)(path, target)
            used = resource.getrusage(resource.RUSAGE_CHILDREN)
            summary["readers"][reader] = {
                "inputs": per_reader, **counts, "slowest_s": round(slowest, 2),
                "cpu_s": round(time.process_time() - cpu + used.ru_utime - child_cpu.ru_utime
                               + used.ru_stime - child_cpu.ru_stime, 1),
                "problems": problems, "slow": slow,
            }
            print(f"{reader}: {counts} (slowest {slowest:.1f} s)", file=sys.stderr, flush=True)
    return summary


def markdown(summary: dict) -> str:
    lines = ["| reader | inputs | " + " | ".join(OUTCOMES) + " | slowest (s) | CPU (s) |",
             "| --- | ---: | " + " | ".join("---:" for _ in OUTCOMES) + " | ---: | ---: |"]
    for reader, row in summary["readers"].items():
        lines.append(f"| {reader} | {row['inputs']} | " + " | ".join(str(row[o]) for o in OUTCOMES)
                     + f" | {row['slowest_s']} | {row['cpu_s']} |")
    return "\n".join(lines)


if __name__ == "__main__":
    os.nice(10)
    main()
