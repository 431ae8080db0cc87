"""Time and memory of phantom generation (napari_vbmd.phantom.generate_phantom) on CPU.

    python benchmarks/bench_phantom.py [--repeat 2] [--threads 1] [--cases cropped110,full40,...] [--json]

Cases (seed 7000, right hand, no motion or erosions unless named):
``cropped110`` 110 x 390 x 488 at 0.082 mm (the default phantom), ``cropped110_motion3`` the same
with motion grade 3 and 3 erosions, ``full40`` 40 x 1536 x 1536 (the whole XtremeCT field of
view; ``full110``, 110 slices of it, is not run by default), ``coarse40`` 40 x 195 x 244 at
0.164 mm (what the tests use), ``sample`` the napari sample (72 x 260 x 325 at 0.123 mm),
``write110`` generate + write the three files of ``cropped110``.
Each case runs in a fresh process so its peak resident memory (ru_maxrss) is its own; the best of
``--repeat`` runs is reported (the machine may be shared: the minimum is the least disturbed), with
CPU time beside wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys

CASES = {
    "cropped110": dict(n_slices=110),
    "cropped110_motion3": dict(n_slices=110, motion_grade=3, erosions=3),
    "full40": dict(fov="full", n_slices=40),
    "full110": dict(fov="full", n_slices=110),
    "coarse40": dict(n_slices=40, spacing_mm=0.164),
    "sample": "sample",
    "write110": "write",
}

CHILD = r"""
import json, resource, sys, tempfile, time
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom
case = json.loads(sys.argv[1])
wall, cpu = time.perf_counter(), time.process_time()
if case == "sample":
    from napari_vbmd._sample_data import make_phantom_sample
    layers = make_phantom_sample()
    shape = list(layers[0][0].shape)
elif case == "write":
    phantom = generate_phantom(PhantomSpec(seed=7000, n_slices=110))
    with tempfile.TemporaryDirectory() as out:
        write_phantom(phantom, out, "bench")
    shape = list(phantom.image.shape)
else:
    phantom = generate_phantom(PhantomSpec(seed=7000, **case))
    shape = list(phantom.image.shape)
result = {"shape": shape, "wall_s": time.perf_counter() - wall, "cpu_s": time.process_time() - cpu,
          "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
print(json.dumps(result))
"""


def run_case(name: str, threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))
    done = subprocess.run([sys.executable, "-c", CHILD, json.dumps(CASES[name])], capture_output=True, text=True,
                          env=env, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--cases", default="coarse40,sample,cropped110,cropped110_motion3,write110,full40")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    rows = []
    for name in args.cases.split(","):
        runs = [run_case(name, args.threads) for _ in range(args.repeat)]
        best = min(runs, key=lambda r: r["wall_s"])
        rows.append({"case": name, **best, "cpu_s_min": min(r["cpu_s"] for r in runs), "runs": len(runs)})
        print(f"{name}: {best['wall_s']:.1f} s wall, {best['cpu_s']:.1f} s CPU, {best['peak_rss_mb']:.0f} MB",
              file=sys.stderr)
    machine = {"cpu_count": os.cpu_count(), "affinity": len(os.sched_getaffinity(0)),
               "load_average": os.getloadavg(), "python": platform.python_version(), "threads": args.threads}
    if args.json:
        print(json.dumps({"machine": machine, "cases": rows}, indent=2))
        return 0
    print(f"machine: {machine}")
    print("| case | shape (z, y, x) | wall s | CPU s | peak RSS MB |")
    print("| --- | --- | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['case']} | {' x '.join(map(str, row['shape']))} | {row['wall_s']:.1f} | "
              f"{row['cpu_s_min']:.1f} | {row['peak_rss_mb']:.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
