"""Cost of the widget's look for the hand when a scan is chosen: `look_for_hand` on a layer's data.

    python benchmarks/bench_hand_look.py [--spacing 0.082] [--slices 110] [--repeat 3]

Generates one whole-hand phantom (1536 x 1536 at 82 um; hand left out of the header), turns it into
napari layer data as the reader does (densities, float32), and times what the Segment & measure
widget's worker does when the scan is chosen (`napari_vbmd.widgets.workflow_run.look_for_hand` on
`layer_to_scan`): without a hand in the header (the image decides) and with one (the image is looked
at too, to warn before Run of a contradiction). Best of ``--repeat``, wall and CPU seconds, and the
process's peak memory. docs/workflow.md (Hand) holds the recorded figures. No napari viewer needed.
"""
from __future__ import annotations

import argparse
import json
import resource
import time

from napari_vbmd.layers import layer_to_scan, scan_to_layer_data
from napari_vbmd.phantom import PhantomSpec, generate_phantom
from napari_vbmd.widgets.workflow_run import look_for_hand


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spacing", type=float, default=0.082)
    parser.add_argument("--slices", type=int, default=110)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--seed", type=int, default=72001)
    args = parser.parse_args(argv)
    phantom = generate_phantom(PhantomSpec(seed=args.seed, hand="left", fov="full", n_slices=args.slices,
                                           spacing_mm=args.spacing, hand_in_header=False))
    data, kwargs, _ = scan_to_layer_data(phantom.image)
    rows = []
    for label, hand in (("no hand in the header", None), ("header says left", "left")):
        meta = {"vbmd": {**kwargs["metadata"]["vbmd"], "hand": hand}}
        runs = []
        for _ in range(args.repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            scan = layer_to_scan(data, meta, scale=kwargs["scale"], translate=kwargs["translate"], kind="image")
            decision, seen = look_for_hand(scan)
            runs.append((time.perf_counter() - wall, time.process_time() - cpu, decision, seen))
        wall, cpu, decision, seen = min(runs, key=lambda r: r[0])
        rows.append({"case": label, "shape": list(phantom.image.shape), "layer_dtype": str(data.dtype),
                     "layer_mb": round(data.nbytes / 1e6), "auto": decision.describe(),
                     "image": seen.describe() if seen is not None else None,
                     "wall_s": round(wall, 2), "cpu_s": round(cpu, 2)})
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3
    print(json.dumps({"rows": rows, "peak_rss_mb": round(peak_mb)}, indent=2))


if __name__ == "__main__":
    main()
