"""Validation during training, by the pipeline's own stages: a validation case is the scan's bone box
(found as ``segment()`` finds it) and its truth; the mask scored is the one ``segment()`` would keep
(working grid, inference, probabilities back on the native grid, threshold, hole filling, the MC2
component, the checkpoint's boundary refinement). So the Dice that picks the best epoch is the
pipeline's Dice of that checkpoint on those cases (tests/test_training.py checks it is equal).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from ..errors import VbmdError
from ..scan import Scan
from . import stages
from .preprocess import Box

#: voxels of the native probabilities sampled (seeded) for the validation AUC
AUC_SAMPLE = 200_000


@dataclass
class ValidationCase:
    case: str
    scan: Scan  # the bone box of the scan only (what the stages read)
    truth: np.ndarray  # bool, the truth within that box
    truth_outside: int  # truth voxels outside the box: misses of any prediction
    hand: str

    @property
    def box(self) -> Box:
        nz, ny, nx = self.scan.shape
        return Box(0, nz, 0, ny, 0, nx)


def validation_case(image: Scan, inside: np.ndarray, margin_mm: float, case: str = "") -> ValidationCase:
    """Keep what validating ``image`` needs: the crop the pipeline would take and the truth in it."""
    from .pipeline import crop_box

    if image.hand not in ("left", "right"):
        raise VbmdError(f"case {case}: the hand is unknown (the pipeline mirrors left hands; give it)", image.source)
    hand = image.hand
    box, _ = crop_box(image, margin_mm)  # no slice range: the bone region is the box
    offset = tuple(o + i * s for o, i, s in zip(image.origin, (box.z0, box.y0, box.x0), image.spacing))
    crop = dataclasses.replace(image, data=np.ascontiguousarray(image.data[box.slices]), origin=offset, header={})
    truth = np.asarray(inside, dtype=bool)
    truth_in_box = np.ascontiguousarray(truth[box.slices])
    return ValidationCase(case, crop, truth_in_box, int(truth.sum()) - int(truth_in_box.sum()), hand)


def pipeline_mask(model, case: ValidationCase, hole_filling: str = "fill") -> tuple[np.ndarray, np.ndarray]:
    """(uint8 native probabilities, bool mask) of ``segment()`` with ``model`` on the case's box."""
    work = stages.to_working(case.scan, case.box, case.hand, model)
    probability = stages.from_working(stages.infer(model, work), work)
    mask = stages.finish(probability, case.scan, case.box, model.threshold, hole_filling, model.band_for(None),
                         edge_level=model.edge_level)
    return probability, mask


def validate(model, cases: list[ValidationCase]) -> dict[str, float]:
    """Dice, IoU and accuracy of the pipeline's masks (pooled over the cases, whole scans counted) and
    the AUC of the native probabilities (on a seeded sample of at most :data:`AUC_SAMPLE` voxels)."""
    from ..evaluation.metrics import overlap_from_counts, roc_auc

    tp = fp = fn = tn = 0
    probabilities, truths = [], []
    for case in cases:
        probability, mask = pipeline_mask(model, case)
        hit = int(np.count_nonzero(mask & case.truth))
        predicted, truth = int(np.count_nonzero(mask)), int(np.count_nonzero(case.truth))
        tp += hit
        fp += predicted - hit
        fn += truth - hit + case.truth_outside
        tn += case.truth.size - predicted - truth + hit
        probabilities.append(probability.ravel())
        truths.append(case.truth.ravel())
    overlap = overlap_from_counts({"tp": tp, "fp": fp, "fn": fn, "tn": tn})
    probability, truth = np.concatenate(probabilities), np.concatenate(truths)
    if probability.size > AUC_SAMPLE:
        pick = np.random.default_rng(0).choice(probability.size, AUC_SAMPLE, replace=False)
        probability, truth = probability[pick], truth[pick]
    auc = roc_auc(truth, probability.astype(np.float32) / 255.0) if 0 < truth.sum() < truth.size else float("nan")
    return {"dice": overlap["dice"], "iou": overlap["iou"], "auc": float(auc), "accuracy": overlap["accuracy"]}
