"""Cost of the joint split and the joint-space cut (segmentation/joint.py) inside ``stages.finish``.

    python benchmarks/bench_joint.py [--repeat 3] [--threads 2]

Two broad held-out phantoms of benchmarks/eval_default_model.py: seed 31000 (a crop where the default
model's mask runs on across the joint and is cut at its waist) and seed 31001 (a crop without a waist), and the
fresh check set's 40042 (a crop whose mask runs across the joint space with no waist: parted at the joint space,
``separate_at_joint_space``). Each is written to a temporary AIM, read back, and run through the real stages up to
the probabilities once (``pipeline.segment`` with the default model, capturing what ``finish`` is given); then
``finish`` is timed ``--repeat`` times with the waist split and with it replaced by a no-op, the split alone, and
the joint-space cut alone on the mask ``finish`` gives without it. Best of the runs, wall seconds.
docs/benchmarks.md holds the recorded figures.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _timing import best  # noqa: E402
from eval_default_model import broad_held_out_specs  # noqa: E402
from napari_vbmd.io import read_scan, write_image  # noqa: E402
from napari_vbmd.phantom import PhantomSpec, generate_phantom  # noqa: E402
from napari_vbmd.segmentation import joint, stages  # noqa: E402
from napari_vbmd.segmentation import postprocess as post  # noqa: E402
from napari_vbmd.segmentation.pipeline import segment  # noqa: E402
from napari_vbmd.segmentation.preprocess import density_block  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="vbmd-bench-joint-"))
    rows = []
    fresh_40042 = PhantomSpec(seed=40042, hand="right", fov="cropped", n_slices=110, spacing_mm=0.082, motion_grade=1,
                              erosions=1, scanner="xtremect1", variation="broad", hand_in_header=False)
    for spec in [*broad_held_out_specs(2, 31000), fresh_40042]:
        scan = read_scan(write_image(work / f"heldout_{spec.seed}.aim", generate_phantom(spec).image))
        seen = {}
        real_finish = stages.finish

        def capture(probability, scan_, box, threshold, hole_filling="fill", band_mm=0.0, cancel=None, threads=None,
                    notes=None, **more):
            seen.update(probability=probability, scan=scan_, box=box, threshold=threshold, band=band_mm, more=more)
            return real_finish(probability, scan_, box, threshold, hole_filling, band_mm, cancel, threads, notes,
                               **more)

        stages.finish = capture
        try:
            result = segment(scan, model="default", hand=spec.hand, threads=args.threads)
        finally:
            stages.finish = real_finish
        call = (seen["probability"], seen["scan"], seen["box"], seen["threshold"], "fill", seen["band"])
        with_split = best(lambda: stages.finish(*call, threads=args.threads, **seen["more"]), args.repeat)
        real_split = stages.separate_at_joint
        stages.separate_at_joint = lambda mask, densities, spacing: (mask, None)
        try:
            without = best(lambda: stages.finish(*call, threads=args.threads, **seen["more"]), args.repeat)
        finally:
            stages.separate_at_joint = real_split
        component = post.keep_largest_component(post.fill_holes_per_slice(
            seen["probability"] >= round(seen["threshold"] * 255), args.threads))
        box = seen["box"]
        split_alone = best(lambda: joint.separate_at_joint(component, lambda z0, z1: density_block(
            seen["scan"], (slice(box.z0 + z0, box.z0 + z1), slice(box.y0, box.y1), slice(box.x0, box.x1))),
            seen["scan"].spacing), args.repeat)
        real_space = stages.separate_at_joint_space
        stages.separate_at_joint_space = lambda mask, densities, spacing: (mask, None)
        try:
            finished = stages.finish(*call, threads=args.threads, **seen["more"])
        finally:
            stages.separate_at_joint_space = real_space
        space_alone = best(lambda: joint.separate_at_joint_space(
            finished, lambda region: density_block(seen["scan"], box.in_scan(region)), seen["scan"].spacing),
            args.repeat)
        cut = result.joint_cut or {}
        rows.append({"case": f"heldout_{spec.seed}", "shape": list(scan.shape),
                     "cut": cut.get("by", "waist") if cut else None,
                     "finish_with_split_s": round(with_split, 3), "finish_without_split_s": round(without, 3),
                     "split_alone_s": round(split_alone, 3), "joint_space_cut_alone_s": round(space_alone, 3),
                     "segment_total_s": round(sum(result.timings.values()), 2)})
        print(json.dumps(rows[-1]), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
