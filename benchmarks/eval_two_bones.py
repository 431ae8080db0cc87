"""How many slices of each mask hold two bones, and which masks the pipeline refuses: the record the
two-bones check (``review_hand.two_bones_concern``) was set and checked on.

    python benchmarks/eval_two_bones.py --cache /tmp/r34/dev --models truth default --csv dev-a.csv
    python benchmarks/eval_two_bones.py --cache /tmp/r34/dev --models classical --csv dev-b.csv

``--cache`` is a folder of the training generator's phantoms (``heldout_<seed>.aim`` with ``_mask.aim`` and
``_truth.json``, as ``eval_default_model.py`` writes them). Each model runs through the pipeline as ``vbmd
segment`` does (the hand from the case's header); a refused case is run again without the refusals, so its
mask is still scored: Dice, its volume over the truth's, its slices holding two bones (``two_bone_slices``),
its broken slices (``ragged_slices``: sections filling less than 70 % of their convex hull,
``review_hand.ragged_slices``), its area on the stack's first and last slice (``review_hand.both_ends_concern``), the second piece of
bone inside it and how far it reaches past the main one (``review_hand.other_bone_piece_concern``)
and its D100 error against the truth file's, beside the refusal's line. ``truth`` scores the truth masks themselves. Phantoms of an independent family
are not for this script: a setting is never chosen on them.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_vbmd.errors import VbmdError
from napari_vbmd.evaluation.metrics import dice
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.review_hand import (end_slice_areas, holds_two_bones, piece_past_the_joint, ragged_slices,
                                     two_bone_slices)
from napari_vbmd.segmentation.models import load
from napari_vbmd.segmentation.pipeline import run
from napari_vbmd.segmentation.settings import SegmentSettings


def score(mask: np.ndarray, truth: np.ndarray, spacing, image=None, truth_d100: float | None = None,
          segmented: tuple[int, int] | None = None) -> dict:
    """``segmented``: the slices the pipeline segmented ([start, stop); the whole stack when None)."""
    two, slices = two_bone_slices(mask, spacing)
    ragged, _ = ragged_slices(mask)
    first, last = end_slice_areas(mask, spacing)  # as review_hand.both_ends_concern judges them
    row = {"dice": dice(truth, mask), "volume_over_truth": float(mask.sum()) / float(truth.sum()),
           "mask_slices": slices, "two_bone_slices": two, "two_bone_fraction": two / slices if slices else 0.0,
           "over_the_line": holds_two_bones(two, slices), "ragged_slices": ragged,
           "ragged_fraction": ragged / slices if slices else 0.0,
           "first_slice_mm2": first, "last_slice_mm2": last, "d100_error_pct": float("nan")}
    if image is not None:  # the bone inside the mask in pieces, as review_hand.other_bone_piece_concern sees it
        _, row["other_piece_mm3"], row["other_piece_beyond_mm"] = piece_past_the_joint(mask, image, segmented)
    if image is not None and truth_d100 and mask.any():
        row["d100_error_pct"] = 100.0 * (measure_vbmd(image, mask).d100_mg_ha_cm3 / truth_d100 - 1.0)
    return row


def evaluate(cache: Path, models: list[str], threads: int | None, part: tuple[int, int] = (0, 1)) -> list[dict]:
    loaded = {name: load(name, device="cpu") for name in models if name != "truth"}
    rows = []
    images = sorted(p for p in cache.glob("heldout_*.aim") if not p.name.endswith("_mask.aim"))
    for image_path in images[part[0]::part[1]]:
        case = image_path.stem
        image = read_scan(image_path)
        truth = read_mask(cache / f"{case}_mask.aim", like=image).data.astype(bool)
        info = json.loads((cache / f"{case}_truth.json").read_text())
        for name in models:
            t = time.perf_counter()
            refused, segmented = "", None
            if name == "truth":
                mask = truth
            else:
                settings = SegmentSettings(model=loaded[name], threads=threads)
                try:
                    result = run(image, settings)
                except VbmdError as exc:
                    refused = str(exc).splitlines()[0]
                    result = run(image, settings, refuse_other_bone=False)
                mask, segmented = result.mask.data.astype(bool), (result.box.z0, result.box.z1)
            row = {"case": case, "hand": info["hand"], "fov": info["fov"], "spacing_mm": info["spacing_mm"],
                   "model": name, **score(mask, truth, image.spacing, image, info.get("d100_mg_ha_cm3"), segmented),
                   "refused": refused,
                   "seconds": time.perf_counter() - t}
            rows.append(row)
            print(f"{case} {name}: Dice {row['dice']:.3f}, {row['two_bone_slices']} of {row['mask_slices']} slices "
                  f"with two bones {'REFUSED ' + refused if refused else ''}", file=sys.stderr, flush=True)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cache", required=True, type=Path)
    parser.add_argument("--models", nargs="+", default=["truth", "default", "classical"])
    parser.add_argument("--csv", required=True, type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--part", default="0/1", help="K/N: every N-th case from the K-th (one process per core)")
    args = parser.parse_args(argv)
    k, n = (int(v) for v in args.part.split("/"))
    rows = evaluate(args.cache, args.models, args.threads, (k, n))
    if not rows:
        print(f"{args.cache}: no heldout_*.aim cases", file=sys.stderr)
        return 2
    tmp = args.csv.with_name(args.csv.name + ".part")
    with open(tmp, "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(args.csv)
    for name in args.models:
        mine = [r for r in rows if r["model"] == name]
        print(f"{name}: {len(mine)} masks, {sum(r['two_bone_slices'] > 0 for r in mine)} with any slice of two bones, "
              f"{sum(r['over_the_line'] for r in mine)} over the line; refused {sum(bool(r['refused']) for r in mine)} "
              f"({sum('two bones' in r['refused'] for r in mine)} for two bones)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
