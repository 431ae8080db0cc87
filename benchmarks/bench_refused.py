"""Cost of re-measuring a corrected mask in the desk (``CaseSession.measure``), with and without the pipeline's
checks (``pipeline.mask_concern``: two bones, beyond the joint, a broken outline), which the desk runs on a mask
the pipeline refused each time the person changes it.

    python benchmarks/bench_refused.py [--repeat 3]

Three phantoms of the training generator (seed 5, a right hand, 82 µm): a crop of 110 slices, a crop of 320
slices, a whole-hand field of 110 slices. The truth mask stands for the corrected mask (what the checks pass).
Timed ``--repeat`` times each: ``measure_vbmd`` (the figures) and ``mask_concern`` (the checks). Best of the
runs, wall seconds; docs/benchmarks.md holds the recorded figures.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best  # noqa: E402
from napari_vbmd.measure import measure_vbmd  # noqa: E402
from napari_vbmd.phantom import PhantomSpec, generate_phantom  # noqa: E402
from napari_vbmd.segmentation.pipeline import mask_concern  # noqa: E402

CASES = {"crop 110": dict(fov="cropped", n_slices=110), "crop 320": dict(fov="cropped", n_slices=320),
         "whole field 110": dict(fov="full", n_slices=110)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    print("| case | shape | figures (`measure_vbmd`) | checks (`mask_concern`) |\n|---|---|---|---|")
    for name, fov in CASES.items():
        phantom = generate_phantom(PhantomSpec(seed=5, hand="right", spacing_mm=0.082, **fov))
        mask = np.asarray(phantom.truth.data) != 0
        figures = best(lambda: measure_vbmd(phantom.image, mask.astype(np.uint8)), args.repeat)
        found = []
        checks = best(lambda: found.append(mask_concern(mask, phantom.image, (0, mask.shape[0]))), args.repeat)
        if found[-1] is not None:
            raise SystemExit(f"{name}: the truth mask did not pass the checks: {found[-1][1]}")
        print(f"| {name} | {' × '.join(map(str, mask.shape))} | {figures:.2f} s | {checks:.2f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
