"""How well the review flags find the slices a reviewer must correct, on held-out phantoms.

    python benchmarks/eval_review_flags.py [--model default] [--sets 5000,6000] [--n 24] [--json-out OUT.json]
    python benchmarks/eval_review_flags.py --family independent3 [--n 48] [--json-out OUT.json]

Each held-out phantom of benchmarks/eval_default_model.py (seeds 5000.. and 6000.., written once to
their caches) is segmented by the full pipeline, and the review flags come from the same engine call
the napari widget's case session makes (``session.FlagContext``: the segmentation's crop, the
model's threshold, the scan's spacing, densities of the crop). A slice "needs a correction" when the pixels wrong (missed or
extra against the phantom's truth) exceed ``--bad-fraction`` of its true area, on slices holding
at least a quarter of the median true area (the bone's tips are judged by the area rule).
Prints per-case rows and the totals recorded in docs/workflow.md. A case the pipeline refuses (one
line, nothing written: no mask reaches a reviewer) is a row with its reason, counted apart.

``--family independent|independent3|independent4|independent5`` runs it on an independent family's evaluation
cases instead
(``benchmarks/eval_independent.py``'s cache, the hand given as there): how often the desk warns a
reviewer where a model trained on another generator goes wrong. Each row also carries the case's Dice
and D100 error, so the summary can say how many cases outside issue 20's lines have a flag at all.
Evaluation only, as the families' own rule says: nothing is chosen on it.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np

from eval_default_model import ensure_phantoms, held_out_specs
from eval_independent import FAMILIES
from napari_vbmd._atomic import atomic_path
from napari_vbmd.errors import VbmdError
from napari_vbmd.evaluation.metrics import dice
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.segmentation.calibrate import LINE_DICE, LINE_ERROR_PCT
from napari_vbmd.segmentation.pipeline import segment
from napari_vbmd.session import FlagContext
from napari_vbmd.segmentation.models import load_model

CACHES = {5000: "/tmp/vbmd-eval-phantoms", 6000: "/tmp/vbmd-fresh-phantoms"}


def evaluate_case(case: dict, model, threads: int | None, bad_fraction: float,
                  hand: str = "auto") -> tuple[dict, Counter]:
    image = read_scan(case["image"])
    truth = read_mask(case["mask"], like=image).data != 0
    try:
        result = segment(image, model=model, threads=threads, keep_probability=True, hand=hand)
    except VbmdError as exc:  # refused with one line: no mask reaches the reviewer, nothing to flag
        return {"case": case["name"], "refused": str(exc).splitlines()[0], "within_lines": False}, Counter()
    d100_truth = measure_vbmd(image, truth).d100_mg_ha_cm3
    d100_error_pct = 100.0 * (measure_vbmd(image, result.mask.data).d100_mg_ha_cm3 - d100_truth) / d100_truth
    case_dice = float(dice(truth, np.asarray(result.mask.data) != 0))
    box = result.box.slices
    context = FlagContext.from_segmentation(image, result)
    t = time.perf_counter()
    flags = context.flags(np.asarray(result.mask.data))
    seconds = time.perf_counter() - t
    mask, truth = np.asarray(result.mask.data)[box] != 0, truth[box]
    true_area = truth.reshape(len(truth), -1).sum(1)
    wrong = (mask ^ truth).reshape(len(truth), -1).sum(1)
    median = float(np.median(true_area[true_area > 0]))
    bad = {int(z) for z in np.flatnonzero((wrong > bad_fraction * np.maximum(true_area, 1)) & (true_area >= 0.25 * median))}
    flagged = {f.slice_index - result.box.z0 for f in flags}  # in the crop, as the truth here
    row = {"case": case["name"], "mask_slices": int(mask.reshape(len(mask), -1).any(1).sum()), "flagged": len(flagged),
           "need_correction": len(bad), "need_correction_flagged": len(bad & flagged), "flag_seconds": seconds,
           "dice": case_dice, "d100_error_pct": float(d100_error_pct),
           "within_lines": bool(case_dice >= LINE_DICE and abs(d100_error_pct) <= LINE_ERROR_PCT)}
    return row, Counter(reason for f in flags for reason in f.reasons)


def _cases(args):
    """(case, hand) pairs: the held-out sets of the training generator (hand from the header), or an
    independent family's evaluation cases (hand given, as eval_independent.py does)."""
    if args.family:
        import eval_independent as ei
        cache = Path(args.cache or ei._NAMING[args.family][1])
        specs = ei.family_module(args.family).evaluation_specs(args.n or 48)
        return [(case, case["spec"].hand) for case in ei.ensure_cases(cache, specs, args.family)]
    return [(case, "auto") for first in (int(s) for s in args.sets.split(","))
            for case in ensure_phantoms(Path(CACHES.get(first, f"/tmp/vbmd-heldout-{first}")),
                                        held_out_specs(args.n or 24, first))]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--sets", default="5000,6000", help="first seeds of the held-out sets")
    parser.add_argument("--n", type=int, help="cases per set (default 24; 48 for --family)")
    parser.add_argument("--family", choices=FAMILIES,
                        help="an independent family's evaluation cases instead of --sets (hand given)")
    parser.add_argument("--cache", help="case folder for --family (default: eval_independent.py's)")
    parser.add_argument("--threads", type=int)
    parser.add_argument("--bad-fraction", type=float, default=0.10)
    parser.add_argument("--json-out")
    args = parser.parse_args(argv)
    model = args.model if args.model == "classical" else load_model(args.model, "cpu")  # classical has no weights
    rows, reasons = [], Counter()
    for case, hand in _cases(args):
        row, counted = evaluate_case(case, model, args.threads, args.bad_fraction, hand)
        rows.append(row)
        reasons += counted
        print(json.dumps(row), flush=True)
    refused = [r for r in rows if "refused" in r]
    rows_all, rows = rows, [r for r in rows if "refused" not in r]
    total = {key: sum(r[key] for r in rows) for key in ("mask_slices", "flagged", "need_correction",
                                                          "need_correction_flagged")}
    with_bad = [r for r in rows if r["need_correction"]]
    clean = [r for r in rows if not r["need_correction"]]
    summary = {
        **total,
        "cases": len(rows_all),
        "refused": len(refused),
        "cases_needing_correction": len(with_bad),
        "of_those_with_a_flagged_slice_needing_it": sum(r["need_correction_flagged"] > 0 for r in with_bad),
        "clean_cases_without_flags": sum(r["flagged"] == 0 for r in clean),
        "clean_cases": len(clean),
        "most_flags_in_a_clean_case": max((r["flagged"] for r in clean), default=0),
        "cases_outside_the_lines": sum(not r["within_lines"] for r in rows),  # of those measured (not refused)
        "of_those_with_a_flag": sum(r["flagged"] > 0 for r in rows if not r["within_lines"]),
        "cases_within_the_lines_with_a_flag": sum(r["flagged"] > 0 for r in rows if r["within_lines"]),
        "reasons": dict(reasons),
        "median_flag_seconds": float(np.median([r["flag_seconds"] for r in rows])),
        "max_flag_seconds": float(max(r["flag_seconds"] for r in rows)),
    }
    print(json.dumps(summary, indent=1))
    if args.json_out:
        with atomic_path(Path(args.json_out)) as tmp:
            Path(tmp).write_text(json.dumps({"family": args.family or "training", "model": args.model,
                                             "rows": rows_all, "summary": summary}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
