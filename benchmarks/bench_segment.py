"""Per-stage timings and peak memory of napari-vbmd's pipeline, side by side with the published one's shape.

    python benchmarks/bench_segment.py [--models default,resnet34] [--pipelines ours,published]
                                       [--threads 2] [--repeat 2] [--cases cropped110,full110,full320]

Cases (phantoms written once to ``--cache``, native 0.082 mm voxels): ``cropped110`` and ``full110``
are held-out phantoms 0 and 2 of benchmarks/eval_default_model.py (seeds 5000 and 5002: a cropped
AIM of 110 × 390 × 488 and the whole 1536 × 1536 XtremeCT field of view), ``full320`` is seed 7000
with 320 slices (a left hand).

Pipelines: ``ours`` = ``segment()`` (bone crop, physical working grid, hole filling, MC2
component); ``published`` = benchmarks/published_pipeline.py (whole scan resized to 80 × 512 × 512,
one forward pass, probabilities resized back to the full grid, threshold). Both read the AIM and
write the mask AIM, timed. Models: ``default`` (the bundled, trained one) and the study's networks
with random weights for timing (``resnet34``: 2D U-Net with a ResNet34 encoder, working grid
0.25 mm in our pipeline; ``unet3d``: the Isensee-style 3D U-Net, 0.25 mm). Dice against the
phantom's truth is printed for trained weights only. ``--ceiling`` adds the resolution ceilings:
the true mask taken to each pipeline's grid and back.

Each run is a fresh process so its peak resident memory (ru_maxrss) is its own; the best of
``--repeat`` runs is reported (the machine may be shared, so the minimum is the least disturbed).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def case_spec(name: str):
    from napari_vbmd.phantom import PhantomSpec

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from eval_default_model import held_out_specs

    if name == "cropped110":
        return held_out_specs(3)[0]
    if name == "full110":
        return held_out_specs(3)[2]
    if name == "full320":
        return PhantomSpec(seed=7000, hand="left", fov="full", n_slices=320, motion_grade=1)
    raise SystemExit(f"unknown case {name!r}")


def ensure_case(cache: Path, name: str) -> Path:
    from napari_vbmd.phantom import generate_phantom, phantom_is_cached, phantom_paths, write_phantom

    paths = phantom_paths(cache, name)
    if not phantom_is_cached(cache, name, case_spec(name)):
        write_phantom(generate_phantom(case_spec(name)), cache, name, overwrite=True)
    return paths["image"]


def study_checkpoint(cache: Path, name: str) -> Path:
    """A checkpoint of the study's network with random weights (timing does not depend on weights)."""
    from napari_vbmd.segmentation.checkpoint import ModelConfig, save_checkpoint
    from napari_vbmd.segmentation.networks import build_network

    arch = {"resnet34": "unet2d_resnet34", "unet3d": "unet3d_isensee"}[name]
    path = cache / f"random_{name}.json"
    if not path.exists():
        import torch

        torch.manual_seed(0)
        config = ModelConfig(architecture=arch, spacing_mm=(0.25, 0.25, 0.25), mean=150.0, std=300.0, name=f"{name} (random)")
        save_checkpoint(path, build_network(arch), config)
    return path


def run_one(image_path: Path, model: str, pipeline: str, threads: int, out_dir: Path) -> dict:
    """One end-to-end run in this process: read, segment, write the mask as AIM."""
    import torch

    from napari_vbmd.evaluation.metrics import dice
    from napari_vbmd.io import read_mask, read_scan, write_mask
    from napari_vbmd.segmentation.pipeline import segment
    from napari_vbmd.segmentation.registry import load_model

    torch.set_num_threads(threads)
    spec = "default" if model == "default" else str(study_checkpoint(out_dir, model))
    loaded = load_model(spec, device="cpu")  # model loading is not timed
    start = time.perf_counter()
    t = time.perf_counter()
    scan = read_scan(image_path)
    read_s = time.perf_counter() - t
    if pipeline == "ours":
        result = segment(scan, model=loaded, threads=threads)
        mask, stages = result.mask, result.timings
    else:
        from published_pipeline import published_segment

        data, stages = published_segment(scan, loaded, hand=scan.hand or "right")
        mask = scan.with_data(data, kind="mask", unit="unknown", calibration=scan.calibration)
    t = time.perf_counter()
    out = out_dir / f"{image_path.stem}_bench_mask.aim"
    if out.exists():
        out.unlink()
    write_mask(out, mask, parent=scan)
    write_s = time.perf_counter() - t
    total = time.perf_counter() - start
    truth = read_mask(image_path.with_name(image_path.stem + "_mask.aim"), like=scan).data.astype(bool)
    return {
        "shape": list(scan.shape),
        "read": read_s,
        **{k: stages[k] for k in ("preprocess", "inference", "postprocess")},
        "write": write_s,
        "total": total,
        "dice": dice(truth, np.asarray(mask.data).astype(bool)) if model == "default" else None,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def ceilings(image_path: Path, working_mm: float) -> tuple[float, float]:
    """Dice of the true mask after the round trip through each pipeline's grid (ours, published)."""
    from napari_vbmd.evaluation.metrics import dice
    from napari_vbmd.io import read_mask, read_scan
    from napari_vbmd.segmentation.preprocess import find_bone_box
    from published_pipeline import published_ceiling, working_grid_ceiling

    scan = read_scan(image_path)
    truth = read_mask(image_path.with_name(image_path.stem + "_mask.aim"), like=scan).data.astype(bool)
    box = find_bone_box(scan)
    ours = dice(truth, working_grid_ceiling(truth, scan.spacing[1:], working_mm, box))
    return ours, dice(truth, published_ceiling(truth))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="default")
    parser.add_argument("--pipelines", default="ours,published")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cases", default="cropped110,full110")
    parser.add_argument("--cache", default="/tmp/vbmd-bench-phantoms")
    parser.add_argument("--ceiling", action="store_true", help="also print the resolution ceilings of both grids")
    parser.add_argument("--json-out", help="append every result as a JSON line to this file")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--pipeline", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(Path(args.one), args.models, args.pipeline, args.threads, cache)))
        return 0
    import torch

    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs, "
          f"torch {torch.__version__} threads {args.threads}, no GPU; {platform.python_version()}")
    print("| case | voxels (z×y×x) | pipeline | model | read s | preprocess s | inference s | postprocess s | write s "
          "| total s | peak RSS MB | Dice |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ceiling_rows = []
    for name in args.cases.split(","):
        image = ensure_case(cache, name)
        for model in args.models.split(","):
            for pipeline in args.pipelines.split(","):
                runs = []
                for _ in range(args.repeat):
                    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
                    done = subprocess.run(
                        [sys.executable, __file__, "--one", str(image), "--models", model, "--pipeline", pipeline,
                         "--threads", str(args.threads), "--cache", str(cache)],
                        capture_output=True, text=True, env=env)
                    if done.returncode != 0:
                        raise SystemExit(f"{name} {pipeline} {model} failed:\n{done.stderr[-3000:]}")
                    runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
                best = min(runs, key=lambda r: r["total"])
                dice_text = f"{best['dice']:.4f}" if best["dice"] is not None else "(random weights)"
                print(f"| {name} | {'×'.join(map(str, best['shape']))} | {pipeline} | {model} | {best['read']:.2f} | "
                      f"{best['preprocess']:.2f} | {best['inference']:.2f} | {best['postprocess']:.2f} | "
                      f"{best['write']:.2f} | {best['total']:.2f} | {best['peak_rss_mb']:.0f} | {dice_text} |", flush=True)
                if args.json_out:
                    with open(args.json_out, "a") as fh:
                        fh.write(json.dumps({"case": name, "pipeline": pipeline, "model": model, "threads": args.threads,
                                             "runs": runs, "best": best}) + "\n")
        if args.ceiling:
            ceiling_rows.append((name, *ceilings(image, 0.3)))
    if ceiling_rows:
        print()
        print("| case | Dice ceiling, 0.3 mm working grid (ours) | Dice ceiling, 80 × 512 × 512 (published) |")
        print("|---|---|---|")
        for name, ours, published in ceiling_rows:
            print(f"| {name} | {ours:.4f} | {published:.4f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
