"""Whole-hand fields cropped to the hand: segmented as the square field is?

    python benchmarks/eval_cropped_whole_fields.py [--sets 32000,33000] [--n 96] [--models default,classical]
        [--cache-root /tmp/r29] [--csv-out OUT.csv]

An operator's AIM of a whole hand is often cropped to the hand: long across the knuckles, narrow from
back to palm. Such a field must go through the pipeline as the whole-hand field it is (the row of
heads found, a box around MC2, the bone checked; ``segmentation.focus.is_whole_hand_field``). This
takes the training generator's whole-hand fields among the broad held-out sets (``--sets``, written
once to ``<cache-root>/broad<first two digits>`` as eval_default_model.py names them there), crops each
to its bones (density above 400 mg HA/cm3 on any slice) and 6 mm around, and segments three ways with
the hand given: the square field as written, the cropped field, and the cropped field under the rule
before 2026-12-01 (a whole hand only when *both* sides reach 60 mm), which gives it no focus box.
Prints one JSON row per case, variant and model; ``--csv-out`` writes them (docs/default-model.md).
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from eval_default_model import broad_held_out_specs, ensure_phantoms  # noqa: E402
from napari_vbmd._atomic import atomic_path  # noqa: E402
from napari_vbmd.errors import VbmdError  # noqa: E402
from napari_vbmd.evaluation.metrics import dice  # noqa: E402
from napari_vbmd.io import read_mask, read_scan  # noqa: E402
from napari_vbmd.measure import measure_vbmd  # noqa: E402
from napari_vbmd.segmentation import focus  # noqa: E402
from napari_vbmd.segmentation.pipeline import segment  # noqa: E402

BONE_MG = 400.0
MARGIN_MM = 6.0
FIELDS = ("case", "model", "variant", "field_y_mm", "field_x_mm", "focus_box", "dice", "d100_error_pct", "refused")


def before_the_fix(scan) -> bool:
    """The rule before 2026-12-01: a whole hand only when both in-plane sides reach 60 mm."""
    return min(scan.shape[1] * scan.spacing[1], scan.shape[2] * scan.spacing[2]) >= focus.WHOLE_HAND_MIN_MM


def cropped_to_bones(image, truth):
    ys, xs = np.nonzero((image.density() > BONE_MG).any(axis=0))
    margin = int(round(MARGIN_MM / float(image.spacing[1])))
    box = (max(int(ys.min()) - margin, 0), int(ys.max()) + margin + 1,
           max(int(xs.min()) - margin, 0), int(xs.max()) + margin + 1)
    return focus.crop_to(image, box), focus.crop_to(truth, box)


def run_case(name: str, image, truth, hand: str, model: str, variant: str, threads: int | None) -> dict:
    rule = before_the_fix if variant == "cropped, rule before" else focus.is_whole_hand_field
    row = {"case": name, "model": model, "variant": variant,
           "field_y_mm": round(image.shape[1] * image.spacing[1], 1),
           "field_x_mm": round(image.shape[2] * image.spacing[2], 1)}
    true = truth.data != 0
    d100_truth = measure_vbmd(image, true).d100_mg_ha_cm3
    current = focus.is_whole_hand_field
    focus.is_whole_hand_field = rule  # the pipeline looks it up in the module at each run
    try:
        result = segment(image, model=model, hand=hand, threads=threads)
    except VbmdError as exc:
        return {**row, "focus_box": "", "dice": "", "d100_error_pct": "", "refused": str(exc).splitlines()[0]}
    finally:
        focus.is_whole_hand_field = current
    mask = result.mask.data != 0
    return {**row, "focus_box": json.dumps(result.mask.header.get("segmentation", {}).get("focus_box_yx")),
            "dice": round(float(dice(true, mask)), 5),
            "d100_error_pct": round(100.0 * (measure_vbmd(image, mask).d100_mg_ha_cm3 - d100_truth) / d100_truth, 3),
            "refused": ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", default="32000,33000", help="first seeds of broad held-out sets")
    parser.add_argument("--n", type=int, default=96)
    parser.add_argument("--models", default="default,classical")
    parser.add_argument("--cache-root", default="/tmp/r29")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv-out")
    args = parser.parse_args(argv)
    rows = []
    for first in (int(s) for s in args.sets.split(",")):
        specs = [s for s in broad_held_out_specs(args.n, first) if s.fov != "cropped"]
        for case in ensure_phantoms(Path(args.cache_root) / f"broad{str(first)[:2]}", specs):
            image = read_scan(case["image"])
            truth = read_mask(case["mask"], like=image)
            cropped, cropped_truth = cropped_to_bones(image, truth)
            for model in args.models.split(","):
                for variant, (img, tr) in {"square": (image, truth), "cropped": (cropped, cropped_truth),
                                           "cropped, rule before": (cropped, cropped_truth)}.items():
                    row = run_case(case["name"], img, tr, case["spec"].hand, model, variant, args.threads)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
    if args.csv_out:
        with atomic_path(Path(args.csv_out)) as tmp, open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=FIELDS)
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
