"""Whole-process wall time and peak memory of `vbmd segment` against the study's cheapest pipeline.

    python benchmarks/bench_segment.py [--cases cropped110,cropped320,f768x110,f768x320,full110,full320]
                                       [--repeat 3] [--threads 2] [--json-out FILE]

The reference is the published pipeline's shape with the study's 3D U-Net (depth 5, 2 base channels,
instance norm, LeakyReLU; random weights, seeded) as a whole process: ``benchmarks/published_pipeline.py
IMAGE -o MASK`` (whole scan to densities, resized to 80 x 512 x 512, one forward pass, probabilities
resized back to the full grid, threshold, mask written). Ours is ``vbmd segment IMAGE -o MASK`` with
the bundled default model. Both read and write with napari-vbmd's AIM reader and writer.

Each run is a fresh process, timed from outside (wall clock from start to exit, peak resident memory
of that process from GNU ``/usr/bin/time``); ours and the reference alternate (A B A B ...) so a change of the
machine's speed hits both, and the ratio is taken pair by pair (the median of the pairs is reported).
The 1-minute load average before each pair is recorded: this machine is shared. Start-up (interpreter,
imports, model load) is measured on its own by the ``startup`` rows.

Cases (phantoms written once to ``--cache``, native 0.082 mm voxels): ``cropped110`` and ``full110`` are
held-out phantoms 5000 and 5002 of benchmarks/eval_default_model.py (a cropped AIM of 110 x 390 x 488
and the whole 1536 x 1536 XtremeCT field), ``cropped320`` is held-out phantom 5020 (320 slices,
cropped), ``full320`` is seed 7000 (320 slices, whole field, a left hand); ``f768x110`` and
``f768x320`` are the 768 x 768 centre of ``full110`` and ``full320`` around MC2 (geometry kept).
Dice of our mask against the phantom's truth is computed after each run, outside the timing.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASES = ("cropped110", "cropped320", "f768x110", "f768x320", "full110", "full320")


def case_spec(name: str):
    from napari_vbmd.phantom import PhantomSpec

    sys.path.insert(0, str(HERE))
    from eval_default_model import held_out_specs

    if name == "cropped110":
        return held_out_specs(1)[0]
    if name == "full110":
        return held_out_specs(3)[2]
    if name == "cropped320":
        return held_out_specs(21)[20]
    if name == "full320":
        return PhantomSpec(seed=7000, hand="left", fov="full", n_slices=320, motion_grade=1)
    raise SystemExit(f"unknown case {name!r}")


def ensure_case(cache: Path, name: str) -> Path:
    """The case's image path (its truth mask is beside it as ``<stem>_mask.aim``)."""
    from napari_vbmd.phantom import generate_phantom, phantom_is_cached, phantom_paths, write_phantom

    if name.startswith("f768x"):
        return _centre_768(cache, name, ensure_case(cache, "full" + name[len("f768x"):]))
    paths = phantom_paths(cache, name)
    if not phantom_is_cached(cache, name, case_spec(name)):
        write_phantom(generate_phantom(case_spec(name)), cache, name, overwrite=True)
    return paths["image"]


def _centre_768(cache: Path, name: str, full_image: Path) -> Path:
    """768 x 768 of a whole-field phantom centred on MC2 (clamped to the field), origin moved with it."""
    import dataclasses

    from napari_vbmd.io import read_mask, read_scan, write_image, write_mask

    image_path, mask_path = cache / f"{name}.aim", cache / f"{name}_mask.aim"
    if image_path.is_file() and mask_path.is_file() and image_path.stat().st_mtime >= full_image.stat().st_mtime:
        return image_path
    scan = read_scan(full_image)
    truth = read_mask(full_image.with_name(full_image.stem + "_mask.aim"), like=scan)
    ys, xs = np.nonzero(np.asarray(truth.data).any(axis=0))
    y0 = int(np.clip((ys.min() + ys.max()) // 2 - 384, 0, scan.shape[1] - 768))
    x0 = int(np.clip((xs.min() + xs.max()) // 2 - 384, 0, scan.shape[2] - 768))
    window = np.s_[:, y0 : y0 + 768, x0 : x0 + 768]
    origin = (scan.origin[0], scan.origin[1] + y0 * scan.spacing[1], scan.origin[2] + x0 * scan.spacing[2])
    sub = dataclasses.replace(scan, data=np.ascontiguousarray(scan.data[window]), origin=origin, source=None)
    for path in (image_path, mask_path):
        path.unlink(missing_ok=True)
    write_image(image_path, sub)
    sub_truth = dataclasses.replace(truth, data=np.ascontiguousarray(truth.data[window]), origin=origin, source=None)
    write_mask(mask_path, sub_truth, parent=sub)
    return image_path


TIME = "/usr/bin/time"  # GNU time: its own fork is small, so the peak it reports is the command's


def run_process(command: list[str], env: dict) -> dict:
    """Run a command as a whole process: wall seconds, its peak resident memory (MB), its stdout.

    The peak comes from GNU time wrapped around the command: a child forked from this (large) Python
    process would count this process's pages in its peak until it execs."""
    report = Path(f"/tmp/bench_segment_{os.getpid()}.time")
    out_path = Path(f"/tmp/bench_segment_{os.getpid()}.out")
    start = time.perf_counter()
    with open(out_path, "w") as out:
        code = subprocess.run([TIME, "-f", "%M", "-o", str(report), *command], stdout=out,
                              stderr=subprocess.DEVNULL, env=env).returncode
    wall = time.perf_counter() - start
    text = out_path.read_text()
    peak_kb = int(report.read_text().strip().splitlines()[-1])
    out_path.unlink()
    report.unlink()
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with exit code {code}")
    return {"wall_s": wall, "peak_rss_mb": peak_kb / 1024, "stdout": text}


def commands(image: Path, out_dir: Path, threads: int) -> dict[str, list[str]]:
    py = sys.executable
    return {
        "ours": [py, "-m", "napari_vbmd.cli", "segment", str(image), "-o", str(out_dir / "ours_mask.aim"),
                 "--model", "default", "--device", "cpu", "--threads", str(threads), "--json"],
        "published": [py, str(HERE / "published_pipeline.py"), str(image), "-o", str(out_dir / "published_mask.aim"),
                      "--threads", str(threads)],
    }


STARTUP = {
    "interpreter": "pass",
    "ours": "from napari_vbmd.cli import segment; from napari_vbmd.segmentation.models import load, resolve; "
            "load(resolve('default'), 'cpu')",
    "published": "import torch; from napari_vbmd.io import read_scan; from napari_vbmd.segmentation.networks import UNet3D; "
                 "UNet3D(base=2, depth=5).eval()",
}


def dice_of(mask_path: Path, image: Path) -> float:
    from napari_vbmd.evaluation.metrics import dice
    from napari_vbmd.io import read_mask, read_scan

    scan = read_scan(image)
    truth = read_mask(image.with_name(image.stem + "_mask.aim"), like=scan).data.astype(bool)
    return float(dice(truth, read_mask(mask_path, like=scan).data.astype(bool)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--repeat", type=int, default=3, help="pairs (ours, reference) per case")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--cache", default="/tmp/vbmd-bench-phantoms")
    parser.add_argument("--json-out", help="append every run as a JSON line to this file")
    parser.add_argument("--generate-only", action="store_true")
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    images = {name: ensure_case(cache, name) for name in args.cases.split(",")}
    if args.generate_only:
        return 0
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
    import torch

    machine = (f"{platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
               f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB, no GPU; Python "
               f"{platform.python_version()}, torch {torch.__version__}, {args.threads} threads")
    print(f"machine: {machine}; {time.strftime('%Y-%m-%d %H:%M')}", flush=True)
    records = []

    def record(**row):
        records.append(row)
        if args.json_out:
            with open(args.json_out, "a") as fh:
                fh.write(json.dumps(row) + "\n")

    print("\n| start-up (whole process, median of runs) | wall s | peak RSS MB |\n|---|---|---|")
    for what, code in STARTUP.items():
        runs = [run_process([sys.executable, "-c", code], env) for _ in range(args.repeat)]
        for r in runs:
            r.pop("stdout")
        record(kind="startup", what=what, runs=runs, load=os.getloadavg()[0])
        print(f"| {what} | {statistics.median(r['wall_s'] for r in runs):.2f} | "
              f"{statistics.median(r['peak_rss_mb'] for r in runs):.0f} |", flush=True)

    print("\n| case | voxels (z×y×x) | ours wall s | published 3D U-Net wall s | wall ours/published | ours peak MB "
          "| published peak MB | memory ours/published | ours stages s (read, preprocess, inference, postprocess, "
          "write) | published stages s (read, preprocess, inference, postprocess, write) | Dice (ours) | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    out_dir = cache / "out"
    out_dir.mkdir(exist_ok=True)
    for name, image in images.items():
        cmds = commands(image, out_dir, args.threads)
        pairs = []
        for _ in range(args.repeat):
            load = os.getloadavg()[0]
            ours = run_process(cmds["ours"], env)
            published = run_process(cmds["published"], env)
            ours["stages"] = json.loads(ours.pop("stdout"))["timings_s"]
            published["stages"] = json.loads(published.pop("stdout").strip().splitlines()[-1])["timings_s"]
            pairs.append({"ours": ours, "published": published, "load": load})
        dice = dice_of(out_dir / "ours_mask.aim", image)
        from napari_vbmd.io import read_scan

        shape = read_scan(image).shape
        record(kind="case", case=name, shape=list(shape), pairs=pairs, dice=dice, threads=args.threads)
        med = lambda key, who: statistics.median(p[who][key] for p in pairs)  # noqa: E731
        wall_ratio = statistics.median(p["ours"]["wall_s"] / p["published"]["wall_s"] for p in pairs)
        mem_ratio = statistics.median(p["ours"]["peak_rss_mb"] / p["published"]["peak_rss_mb"] for p in pairs)
        stage_keys = ("read", "preprocess", "inference", "postprocess", "write")
        stages = {who: ", ".join(f"{statistics.median(p[who]['stages'][k] for p in pairs):.2f}" for k in stage_keys)
                  for who in ("ours", "published")}
        loads = "–".join(f"{x:.1f}" for x in (min(p["load"] for p in pairs), max(p["load"] for p in pairs)))
        print(f"| {name} | {'×'.join(map(str, shape))} | {med('wall_s', 'ours'):.2f} | {med('wall_s', 'published'):.2f} "
              f"| **{wall_ratio:.2f}** | {med('peak_rss_mb', 'ours'):.0f} | {med('peak_rss_mb', 'published'):.0f} "
              f"| **{mem_ratio:.2f}** | {stages['ours']} | {stages['published']} | {dice:.4f} | {loads} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
