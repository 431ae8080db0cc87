"""Per-stage timings of `segment` on CPU: read, preprocess, inference, postprocess, write.

    python benchmarks/bench_segment.py [--model default] [--threads 2] [--repeat 2] [--cases cropped110,full110]

Cases (phantoms written once to ``--cache``, native 0.082 mm voxels): ``cropped110`` and ``full110``
are held-out phantoms 0 and 2 of benchmarks/eval_default_model.py (seeds 5000 and 5002: a cropped
AIM of 110 × 390 × 488 and the whole 1536 × 1536 XtremeCT field of view), ``full320`` is seed 7000
with 320 slices (slow to generate, not run by default).
Each case runs in a fresh process so its peak resident memory (ru_maxrss) is its own; the best
of ``--repeat`` runs is reported (the machine is shared, so the minimum is the least disturbed).
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
    from napari_vbmd.phantom import generate_phantom, phantom_paths, write_phantom

    paths = phantom_paths(cache, name)
    if not all(p.exists() for p in paths.values()):
        write_phantom(generate_phantom(case_spec(name)), cache, name, overwrite=True)
    return paths["image"]


def run_one(image_path: Path, model: str, threads: int, out_dir: Path) -> dict:
    """One end-to-end run in this process: read, segment, write the mask as AIM."""
    import torch

    from napari_vbmd.io import read_mask, read_scan, write_mask
    from napari_vbmd.evaluation.metrics import dice
    from napari_vbmd.segmentation.pipeline import segment
    from napari_vbmd.segmentation.registry import load_model

    torch.set_num_threads(threads)
    loaded = load_model(model, device="cpu") if model != "classical" else model  # model loading is not timed
    start = time.perf_counter()
    t = time.perf_counter()
    scan = read_scan(image_path)
    read_s = time.perf_counter() - t
    result = segment(scan, model=loaded, threads=threads)
    t = time.perf_counter()
    out = out_dir / f"{image_path.stem}_bench_mask.aim"
    if out.exists():
        out.unlink()
    write_mask(out, result.mask, parent=scan)
    write_s = time.perf_counter() - t
    total = time.perf_counter() - start
    truth = read_mask(image_path.with_name(image_path.stem + "_mask.aim"), like=scan).data.astype(bool)
    return {
        "shape": list(scan.shape),
        "read": read_s,
        **{k: result.timings[k] for k in ("preprocess", "inference", "postprocess")},
        "write": write_s,
        "total": total,
        "dice": dice(truth, result.mask.data.astype(bool)),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "box": result.box.to_list(),
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--cases", default="cropped110,full110")
    parser.add_argument("--cache", default="/tmp/vbmd-bench-phantoms")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    cache = Path(args.cache)
    cache.mkdir(parents=True, exist_ok=True)
    if args.one:
        print(json.dumps(run_one(Path(args.one), args.model, args.threads, cache)))
        return 0
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} logical CPUs (shared), "
          f"torch threads {args.threads}, no GPU; model {args.model}")
    print("| case | voxels (z×y×x) | read s | preprocess s | inference s | postprocess s | write s | total s | peak RSS MB | Dice |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name in args.cases.split(","):
        image = ensure_case(cache, name)
        runs = []
        for _ in range(args.repeat):
            env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads))
            done = subprocess.run([sys.executable, __file__, "--one", str(image), "--model", args.model, "--threads",
                                   str(args.threads), "--cache", str(cache)], capture_output=True, text=True, env=env,
                                  check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
        best = min(runs, key=lambda r: r["total"])
        print(f"| {name} | {'×'.join(map(str, best['shape']))} | {best['read']:.2f} | {best['preprocess']:.2f} | "
              f"{best['inference']:.2f} | {best['postprocess']:.2f} | {best['write']:.2f} | {best['total']:.2f} | "
              f"{best['peak_rss_mb']:.0f} | {best['dice']:.4f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
