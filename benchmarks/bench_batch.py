"""Throughput of `vbmd batch` with 1 and 2 local workers (and in process, for reference).

    python benchmarks/bench_batch.py [--cases 6] [--slices 48] [--spacing 0.123] [--model classical]

Makes ``--cases`` phantoms once (in a temporary folder, or --data DIR to keep them), then runs the
batch on a fresh output folder for each configuration and prints a Markdown table: wall time
including the cluster's start (also shown alone), the sum of the cases' own times, and cases
per minute. The figures
in docs/batch.md come from this script.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path


def make_cohort(folder: Path, n: int, slices: int, spacing: float) -> None:
    from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

    for i in range(n):
        if (folder / f"case{i:02d}.aim").exists():
            continue
        spec = PhantomSpec(seed=100 + i, hand="left" if i % 4 == 3 else "right", n_slices=slices, spacing_mm=spacing)
        write_phantom(generate_phantom(spec), folder, f"case{i:02d}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=6)
    parser.add_argument("--slices", type=int, default=48)
    parser.add_argument("--spacing", type=float, default=0.123, help="phantom voxel size (mm)")
    parser.add_argument("--model", default="classical")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--workers", default="0,1,2", help="comma-separated worker counts (0 = in process)")
    parser.add_argument("--data", type=Path, help="keep the phantoms here (reused when present)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()

    from napari_vbmd.batch import BatchSettings, run_batch

    with tempfile.TemporaryDirectory() as tmp:
        data = args.data or Path(tmp) / "in"
        data.mkdir(parents=True, exist_ok=True)
        t = time.perf_counter()
        make_cohort(data, args.cases, args.slices, args.spacing)
        print(f"phantoms: {args.cases} x {args.slices} slices at {args.spacing} mm ready in "
              f"{time.perf_counter() - t:.1f} s", flush=True)
        results = []
        for workers in (int(w) for w in args.workers.split(",")):
            out = Path(tmp) / f"out{workers}"
            settings = BatchSettings(model=args.model, device=args.device)
            summary = run_batch(data, out, settings, workers=workers)
            assert summary.failed == 0, [r["error"] for r in summary.table if r["error"]]
            work = sum(r["t_total_s"] for r in summary.table)
            results.append({
                "workers": workers if workers else "in process",
                "cases": summary.total,
                "wall_s": summary.elapsed_s,
                "cluster_start_s": summary.cluster_start_s,
                "sum_case_s": round(work, 2),
                "cases_per_min": round(60 * summary.total / summary.elapsed_s, 2),
            })
            print(json.dumps(results[-1]), flush=True)
    print(f"\nmachine: {platform.node()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
          f"model {args.model} on {args.device}")
    print("| workers | cases | wall (s) | of which cluster start (s) | sum of case times (s) | cases/min |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(f"| {r['workers']} | {r['cases']} | {r['wall_s']:.1f} | {r['cluster_start_s']:.1f} | "
              f"{r['sum_case_s']:.1f} | {r['cases_per_min']:.1f} |")
    if args.json:
        args.json.write_text(json.dumps(results, indent=1) + "\n")


if __name__ == "__main__":
    main()
