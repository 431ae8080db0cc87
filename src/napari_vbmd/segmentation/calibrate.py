"""Choosing a checkpoint's probability threshold on validation pairs, for vBMD rather than overlap.

The D100 of a mask is far more sensitive to a boundary that lies too far inside (the dense cortex
is left out) than to one too far outside (a rim of soft tissue is averaged in): on an MC2 phantom,
eroding the true mask by one 82 µm voxel lowers D100 by about 3 %, dilating it raises D100 by under
1 %, while Dice falls by the same 0.012 either way. So the threshold that maximises Dice is not the
one that measures vBMD best. :func:`calibrate_threshold` runs the full pipeline once per validation
case, re-thresholds its probabilities at each candidate, and picks the candidate with the smallest
mean |D100 error| among those whose mean Dice is within ``dice_tolerance`` of the best. Given
``bands``, it chooses the boundary refinement band (mm; 0 = the network's own boundary, see
:func:`~napari_vbmd.segmentation.postprocess.refine_boundary`) jointly with the threshold, by the
same rule; given ``levels``, the refinement's edge level (0.5: the half-maximum) as well.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np
from scipy import ndimage

from .._atomic import write_text_atomic
from ..errors import VbmdError
from . import postprocess as post
from .datasets import Pair, load_pair
from .preprocess import density_block
from .stages import finish

DEFAULT_CANDIDATES = (0.2, 0.3, 0.4, 0.5, 0.6)
#: the ways a setting can be chosen: "dice" - the smallest mean |D100 error| among settings whose mean Dice
#: is within the tolerance of the best; "lines" - the most cases with Dice >= LINE_DICE and |D100 error| <=
#: LINE_ERROR_PCT (the targets of issue 20), ties broken by the smaller mean |D100 error|
RULES = ("dice", "lines")
LINE_DICE = 0.97
LINE_ERROR_PCT = 1.5


def mask_scores(probability: np.ndarray, image, box, density_crop: np.ndarray, truth: np.ndarray, threshold: float,
                band_mm: float = 0.0, edge_level: float = post.DEFAULT_EDGE_LEVEL):
    """(Dice, D100) of the mask the pipeline keeps at ``threshold``, ``band_mm`` and ``edge_level``
    (:func:`.stages.finish`)."""
    crop_mask = finish(probability, image, box, threshold, "fill", band_mm, edge_level=edge_level)
    intersection = int(np.logical_and(crop_mask, truth[box.slices]).sum())
    total = int(crop_mask.sum()) + int(truth.sum())
    dice = 2 * intersection / total if total else 1.0
    d100 = float(density_crop[crop_mask].mean()) if crop_mask.any() else float("nan")
    return dice, d100


def calibrate_threshold(checkpoint, pairs: list[Pair], candidates=DEFAULT_CANDIDATES, dice_tolerance: float = 0.01,
                        device: str = "cpu", threads: int | None = None,
                        log: Callable[[str], None] | None = None, bands=(0.0,),
                        levels=(post.DEFAULT_EDGE_LEVEL,), rule: str = "dice") -> dict:
    """Per-candidate (threshold, boundary band, edge level) mean Dice and mean/max |D100 error| (%) on
    ``pairs``, and the chosen threshold, band and level."""
    from .pipeline import segment
    from .models import load_model

    if not pairs:
        raise VbmdError("threshold calibration needs at least one image/mask pair")
    if rule not in RULES:
        raise VbmdError(f"the calibration rule must be one of {', '.join(RULES)}, got {rule!r}")
    candidates = tuple(float(t) for t in candidates)
    if not candidates or not all(0 < t < 1 for t in candidates):
        raise VbmdError(f"threshold candidates must be one or more numbers between 0 and 1, got {list(candidates)}")
    bands = tuple(post.check_boundary_band(b) for b in bands)
    if not bands:
        raise VbmdError("threshold calibration needs at least one boundary band (0 for the network's own)")
    levels = tuple(post.check_edge_level(f) for f in levels)
    if not levels:
        raise VbmdError("threshold calibration needs at least one edge level (0.5 for the half-maximum)")
    # a level only matters where there is a band to refine in
    settings = [(t, b, f) for b in bands for f in (levels if b > 0 else levels[:1]) for t in candidates]
    loaded = load_model(str(checkpoint), device=device)
    # the pipeline cuts at the lowest candidate here, so a stored threshold that finds nothing (e.g. a new
    # ensemble's) does not stop the calibration; every candidate re-thresholds the kept probabilities
    loaded = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, threshold=min(candidates)))
    per_case = []
    for pair in pairs:
        image, truth = load_pair(pair)
        # the probabilities are what is scored, at every candidate setting; a refusal of the lowest candidate's
        # mask (two bones, beyond the joint, broken) says nothing about the others, so none stops the calibration
        result = segment(image, model=loaded, threads=threads, keep_probability=True, boundary_band_mm=0.0,
                         refuse_other_bone=False)
        density_crop = density_block(image, result.box.slices)
        truth_box = ndimage.find_objects(truth.astype(np.uint8))[0]
        d100_truth = float(density_block(image, truth_box)[truth[truth_box]].mean())
        row = {"case": pair.case}
        for t, b, f in settings:
            dice, d100 = mask_scores(result.probability, image, result.box, density_crop, truth, t, b, f)
            row[t, b, f] = (dice, 100.0 * (d100 - d100_truth) / d100_truth)
        per_case.append(row)
        if log:
            log(f"{pair.case}: " + ", ".join(
                f"t={t}" + (f" band {b:g} mm" if len(bands) > 1 else "") + (f" level {f:g}" if len(levels) > 1 else "")
                + f": Dice {row[t, b, f][0]:.4f} D100 {row[t, b, f][1]:+.2f}%" for t, b, f in settings))
    table = []
    for t, b, f in settings:
        dices = np.array([r[t, b, f][0] for r in per_case])
        errors = np.array([r[t, b, f][1] for r in per_case])
        table.append({"threshold": t, "boundary_band_mm": b, "edge_level": f, "mean_dice": float(dices.mean()),
                      "mean_d100_error_pct": float(errors.mean()),
                      "median_d100_error_pct": float(np.median(errors)),
                      "min_dice": float(dices.min()),
                      "cases_within_lines": int(((dices >= LINE_DICE) & (np.abs(errors) <= LINE_ERROR_PCT)).sum()),
                      "mean_abs_d100_error_pct": float(np.abs(errors).mean()),
                      "max_abs_d100_error_pct": float(np.abs(errors).max())})
    if rule == "lines":
        chosen = min(table, key=lambda row: (-row["cases_within_lines"], row["mean_abs_d100_error_pct"]))
    else:
        best_dice = max(row["mean_dice"] for row in table)
        eligible = [row for row in table if row["mean_dice"] >= best_dice - dice_tolerance]
        chosen = min(eligible, key=lambda row: row["mean_abs_d100_error_pct"])
    return {"threshold": chosen["threshold"], "boundary_band_mm": chosen["boundary_band_mm"],
            "edge_level": chosen["edge_level"], "table": table,
            "cases": [p.case for p in pairs], "dice_tolerance": dice_tolerance, "rule": rule,
            "per_case": [{"case": r["case"], "results": [[*key, *value] for key, value in r.items() if key != "case"]}
                         for r in per_case]}


def set_checkpoint_threshold(config_path: str | Path, calibration: dict) -> None:
    """Write the chosen threshold, boundary band and edge level (and how they were chosen) into a
    checkpoint's JSON config."""
    config_path = Path(config_path).with_suffix(".json")
    data = json.loads(config_path.read_text(encoding="utf-8"))
    data["threshold"] = float(calibration["threshold"])
    data["boundary_band_mm"] = float(calibration.get("boundary_band_mm", 0.0))
    data["edge_level"] = float(calibration.get("edge_level", post.DEFAULT_EDGE_LEVEL))
    training = data.setdefault("training", {})
    # a recalibration keeps the record it replaces, so the checkpoint says how each setting was chosen
    if "threshold_calibration" in training:
        training.setdefault("earlier_threshold_calibrations", []).append(training["threshold_calibration"])
    # the per-case figures stay with whoever ran the calibration: the checkpoint keeps the table
    training["threshold_calibration"] = {k: v for k, v in calibration.items() if k != "per_case"}
    write_text_atomic(config_path, json.dumps(data, indent=2) + "\n")
