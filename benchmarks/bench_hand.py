"""Cost of finding the hand in the image: `detect_hand` on whole-hand fields of view.

    python benchmarks/bench_hand.py [--spacing 0.082] [--slices 110] [--repeat 3]

Generates one whole-hand phantom (1536 x 1536 at 82 um, 2065 x 2065 at 61 um; hand left out of the
header), then times `detect_hand` (best of ``--repeat``; wall and CPU seconds) and, within it, the
one averaging pass over the voxels. docs/hand.md holds the recorded figures.
"""
from __future__ import annotations

import argparse
import json
import time

from napari_vbmd.phantom import PhantomSpec, generate_phantom
from napari_vbmd.segmentation.hand import detect_hand
from napari_vbmd.segmentation.hand_image import pooled_density


def best(function, repeat: int) -> tuple[float, float, object]:
    runs = []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        out = function()
        runs.append((time.perf_counter() - wall, time.process_time() - cpu, out))
    return min(runs, key=lambda r: r[0])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, default=0.082)
    parser.add_argument("--slices", type=int, default=110)
    parser.add_argument("--seed", type=int, default=72900)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    image = generate_phantom(PhantomSpec(seed=args.seed, fov="full", n_slices=args.slices, spacing_mm=args.spacing,
                                         hand_in_header=False)).image
    pool_s, pool_cpu, (density, _) = best(lambda: pooled_density(image), args.repeat)
    wall, cpu, decision = best(lambda: detect_hand(image), args.repeat)
    print(json.dumps({
        "shape": list(image.shape), "spacing_mm": args.spacing, "scan_mb": image.data.nbytes / 1e6,
        "averaged_shape": list(density.shape), "averaging_pass_s": round(pool_s, 3),
        "averaging_pass_cpu_s": round(pool_cpu, 3), "detect_hand_s": round(wall, 3),
        "detect_hand_cpu_s": round(cpu, 3), "hand": decision.hand, "confidence": decision.confidence,
    }, indent=1))


if __name__ == "__main__":
    main()
