"""What one correction makes of the masks the pipeline refuses for running across the joint: the shipped model's
refusals (out of the scan at both ends, or two pieces parted by a joint space) on the development set, the fresh
check set and the two independent families, each corrected as the desk's "Erase lower slices" / "Erase higher
slices" does (``correction.erase_slices``) at MC2's first (last) slice.

    python benchmarks/eval_refused_correction.py [--out DIR] [--threads 1]

The cases are those of docs/refusals-development-joint-space-cut.csv, docs/refusals-fresh-40000-joint-space-cut.csv
and docs/independent{4,5}-validation-default-joint-space-cut.csv that the shipped model's mask was refused for
running across the joint (refusals of two bones side by side or of a broken outline are not this correction's).
Each phantom is generated, segmented by the real pipeline with the hand given, and the refused mask
(``error.refused``) is corrected where the truth says MC2 ends: a person reads that slice off the image, so this is
the correction at its best, and what it leaves is the network's outline on MC2's own slices. Per case: the refusal,
Dice and D100 error (against the truth mask's D100 in the same scan) before and after, the voxels erased, and what
the pipeline's checks (``pipeline.mask_concern``) say of the corrected mask. Writes
``<out>/refused-correction.json`` and prints a markdown table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_vbmd._atomic import write_text_atomic  # noqa: E402
from napari_vbmd.correction import erase_slices  # noqa: E402
from napari_vbmd.errors import VbmdError  # noqa: E402
from napari_vbmd.evaluation.metrics import dice  # noqa: E402
from napari_vbmd.measure import measure_vbmd  # noqa: E402
from napari_vbmd.segmentation.pipeline import mask_concern, run  # noqa: E402
from napari_vbmd.segmentation.settings import SegmentSettings  # noqa: E402

#: (set, seed): the shipped model's refusals for a mask across the joint, stop 41's records
CASES = (("development", 32008), ("development", 32014), ("development", 33087), ("fresh", 40039),
         ("independent4", 80022), ("independent5", 60040))


def phantom(kind: str, seed: int):
    """(image, truth mask as bool, hand) of one case, generated as its set's records were."""
    if kind in ("development", "fresh"):
        from eval_default_model import broad_held_out_specs

        from napari_vbmd.phantom import generate_phantom

        first = 40000 if kind == "fresh" else 32000 if seed < 33000 else 33000
        spec = broad_held_out_specs(96, first)[seed - first]
        case = generate_phantom(spec)
        return case.image, np.asarray(case.truth.data) != 0, spec.hand
    from eval_independent import family_module

    api = family_module(kind)
    [spec] = [s for s in api.evaluation_specs() if s.seed == seed]
    case = api.generate(spec)
    return case.image, np.asarray(case.truth.data) != 0, spec.hand


def error_pct(image, mask, truth_d100: float) -> float:
    return 100.0 * (measure_vbmd(image, mask.astype(np.uint8)).d100_mg_ha_cm3 / truth_d100 - 1.0)


def correct(kind: str, seed: int, threads: int) -> dict:
    image, truth, hand = phantom(kind, seed)
    truth_d100 = measure_vbmd(image, truth.astype(np.uint8)).d100_mg_ha_cm3
    row = {"set": kind, "seed": seed}
    try:
        run(image, SegmentSettings(model="default", hand=hand, threads=threads))
        return {**row, "refusal": "", "note": "not refused now"}
    except VbmdError as exc:
        refused = getattr(exc, "refused", None)
        if refused is None:
            return {**row, "refusal": str(exc), "note": "refused without its mask"}
        row["refusal"] = exc.reason
    mask = np.asarray(refused.mask.data) != 0
    present, kept = np.flatnonzero(mask.any(axis=(1, 2))), np.flatnonzero(truth.any(axis=(1, 2)))
    fixed = mask
    if present[0] < kept[0]:
        fixed = erase_slices(fixed, int(kept[0]), lower=True) != 0
    if present[-1] > kept[-1]:
        fixed = erase_slices(fixed, int(kept[-1]), lower=False) != 0
    found = mask_concern(fixed, image, (refused.box.z0, refused.box.z1))
    return {**row, "dice_refused": float(dice(truth, mask)), "error_refused_pct": error_pct(image, mask, truth_d100),
            "erased_voxels": int(mask.sum() - fixed.sum()), "dice_corrected": float(dice(truth, fixed)),
            "error_corrected_pct": error_pct(image, fixed, truth_d100),
            "concern_after": found[1] if found else ""}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent.parent / "docs")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args(argv)
    rows = []
    print("| set | case | refused for | Dice, D100 error refused | erased | Dice, D100 error corrected | checks after |"
          "\n|---|---|---|---|---|---|---|")
    for kind, seed in CASES:
        row = correct(kind, seed, args.threads)
        rows.append(row)
        if "erased_voxels" not in row:
            print(f"| {kind} | {seed} | {row['note']}: {row['refusal'][:60]} | | | | |", flush=True)
            continue
        print(f"| {kind} | {seed} | {row['refusal'].split(':')[0][:60]} | {row['dice_refused']:.3f}, "
              f"{row['error_refused_pct']:+.2f} % | {row['erased_voxels']} | {row['dice_corrected']:.3f}, "
              f"{row['error_corrected_pct']:+.2f} % | {row['concern_after'][:50] or 'pass'} |", flush=True)
    write_text_atomic(args.out / "refused-correction.json", json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
