"""Segmentation metrics of a predicted mask against a reference mask, per volume and per slice.

Overlap: Dice = 2|X∩Y| / (|X|+|Y|), IoU = |X∩Y| / |X∪Y| (the paper's printed IoU formula has a
typo), pixel accuracy over every voxel of the field of view. AUC of a probability map against
the reference (scikit-learn's ``roc_auc_score``). Surface distances in millimetres, spacing-aware:
the surface of a mask is its voxels with a face-neighbour outside the mask; each surface voxel's
distance to the other surface comes from scipy's exact Euclidean distance transform with the
voxel spacing as sampling. Hausdorff is the largest such distance, HD95 the larger of the two
directed 95th percentiles (the MONAI / DeepMind ``surface-distance`` convention), ASSD the mean
over both surfaces' voxels.

Empty masks: when both masks are empty there is nothing to compare and ``segmentation_metrics``
raises VbmdError; when one is empty, Dice and IoU are 0 and every surface distance is NaN (a
distance to nothing is undefined). Per slice, slices empty in both masks are skipped.

Work is confined to the bounding box of the union of the masks plus one voxel, so a bone in
1536 x 1536 slices costs what the bone's box costs, not the field of view.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

from ..errors import VbmdError

NAN = float("nan")


def _as_bool(mask, name: str) -> np.ndarray:
    arr = np.asarray(mask)
    return arr if arr.dtype == bool else arr != 0


def _check_pair(reference, prediction) -> tuple[np.ndarray, np.ndarray]:
    ref = _as_bool(reference, "reference")
    pred = _as_bool(prediction, "prediction")
    if ref.shape != pred.shape:
        raise VbmdError(f"reference mask shape {ref.shape} differs from the prediction's {pred.shape}")
    return ref, pred


def union_bbox(*masks: np.ndarray, margin: int = 1) -> tuple[slice, ...] | None:
    """Slices of the smallest box holding every True voxel of all masks, grown by ``margin``."""
    shape = masks[0].shape
    box = []
    for axis in range(len(shape)):
        other = tuple(a for a in range(len(shape)) if a != axis)
        present = np.zeros(shape[axis], dtype=bool)
        for m in masks:
            present |= m.any(axis=other) if other else m
        idx = np.flatnonzero(present)
        if idx.size == 0:
            return None
        box.append(slice(max(int(idx[0]) - margin, 0), min(int(idx[-1]) + 1 + margin, shape[axis])))
    return tuple(box)


# -- overlap -----------------------------------------------------------------------------------
def confusion_counts(reference, prediction) -> dict:
    """True/false positives/negatives of ``prediction`` against ``reference`` (voxel counts)."""
    ref, pred = _check_pair(reference, prediction)
    box = union_bbox(ref, pred, margin=0)
    total = int(ref.size)
    if box is None:
        return {"tp": 0, "fp": 0, "fn": 0, "tn": total}
    r, p = ref[box], pred[box]
    tp = int(np.count_nonzero(r & p))
    n_ref = int(np.count_nonzero(r))
    n_pred = int(np.count_nonzero(p))
    fp, fn = n_pred - tp, n_ref - tp
    return {"tp": tp, "fp": fp, "fn": fn, "tn": total - tp - fp - fn}


def overlap_from_counts(counts: dict) -> dict:
    tp, fp, fn, tn = counts["tp"], counts["fp"], counts["fn"], counts["tn"]
    denom_dice = 2 * tp + fp + fn
    union = tp + fp + fn
    total = tp + fp + fn + tn
    return {
        "dice": 2 * tp / denom_dice if denom_dice else NAN,
        "iou": tp / union if union else NAN,
        "accuracy": (tp + tn) / total if total else NAN,
        "sensitivity": tp / (tp + fn) if tp + fn else NAN,
        "precision": tp / (tp + fp) if tp + fp else NAN,
    }


def dice(reference, prediction) -> float:
    return overlap_from_counts(confusion_counts(reference, prediction))["dice"]


# -- ROC AUC -----------------------------------------------------------------------------------
def _order_keys(values: np.ndarray) -> np.ndarray:
    """uint32 keys whose unsigned order is the order of the float32 values."""
    bits = np.ascontiguousarray(values, dtype=np.float32).view(np.uint32)
    negative = (bits >> 31).astype(bool)
    return np.where(negative, ~bits, bits | np.uint32(0x80000000))


def _chunks(n: int, step: int):
    for start in range(0, n, step):
        yield slice(start, min(start + step, n))


def roc_auc(reference, probability, chunk_voxels: int = 1 << 24) -> float:
    """Area under the ROC curve of ``probability`` as a classifier of ``reference`` voxels.

    Exact (the Mann–Whitney statistic: P(score of a positive > score of a negative), ties
    counting one half, the same number as scikit-learn's ``roc_auc_score``) but linear in the
    number of voxels, so a whole 1536 x 1536 x N field of view costs seconds, not a sort of
    hundreds of millions of scores: scores (compared at float32 precision) are binned by the top
    16 bits of an order-preserving key; pairs in different bins are counted from the bin counts,
    and only the voxels of bins holding both classes go to ``roc_auc_score``. NaN when the
    reference holds only one class.
    """
    from sklearn.metrics import roc_auc_score

    ref = _as_bool(reference, "reference")
    prob = np.asarray(probability)
    if prob.shape != ref.shape:
        raise VbmdError(f"probability map shape {prob.shape} differs from the reference mask's {ref.shape}")
    if not (np.issubdtype(prob.dtype, np.number) or prob.dtype == bool):
        raise VbmdError(f"probability map is not numeric ({prob.dtype})")
    flat_ref = ref.reshape(-1)
    flat_prob = prob.reshape(-1)
    n_bins = 1 << 16
    count_pos = np.zeros(n_bins, dtype=np.int64)
    count_neg = np.zeros(n_bins, dtype=np.int64)
    for part in _chunks(flat_prob.size, chunk_voxels):
        values = flat_prob[part]
        if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
            raise VbmdError("probability map holds non-finite values")
        high = _order_keys(values) >> 16
        is_pos = flat_ref[part]
        count_pos += np.bincount(high[is_pos], minlength=n_bins)
        count_neg += np.bincount(high[~is_pos], minlength=n_bins)
    n_pos, n_neg = int(count_pos.sum()), int(count_neg.sum())
    if n_pos == 0 or n_neg == 0:
        return NAN

    def cross_bin_pairs(cp, cn):
        below = np.cumsum(cn) - cn  # negatives in strictly lower bins
        return float(np.dot(cp.astype(np.float64), below.astype(np.float64)))

    wins = cross_bin_pairs(count_pos, count_neg)
    mixed = (count_pos > 0) & (count_neg > 0)
    if mixed.any():
        labels, scores = [], []
        for part in _chunks(flat_prob.size, chunk_voxels):
            keys = _order_keys(flat_prob[part])
            take = mixed[keys >> 16]
            labels.append(flat_ref[part][take])
            scores.append(keys[take])
        labels = np.concatenate(labels)
        scores = np.concatenate(scores)
        n_pos_m = int(np.count_nonzero(labels))
        n_neg_m = labels.size - n_pos_m
        within_total = roc_auc_score(labels, scores) * n_pos_m * n_neg_m
        cp_m = np.where(mixed, count_pos, 0)
        cn_m = np.where(mixed, count_neg, 0)
        wins += within_total - cross_bin_pairs(cp_m, cn_m)
    return float(wins / (float(n_pos) * float(n_neg)))


# -- surface distances -------------------------------------------------------------------------
def surface(mask: np.ndarray) -> np.ndarray:
    """Voxels of ``mask`` with a face-neighbour outside it (outside the array counts as outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def directed_surface_distances(reference, prediction, spacing) -> tuple[np.ndarray, np.ndarray]:
    """Distances (mm) from each reference surface voxel to the prediction surface, and back.

    Empty arrays when either mask is empty.
    """
    ref, pred = _check_pair(reference, prediction)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ref.ndim:
        raise VbmdError(f"spacing {spacing} does not match {ref.ndim}-D masks")
    box = union_bbox(ref, pred, margin=1)
    if box is None or not ref.any() or not pred.any():
        return np.empty(0), np.empty(0)
    surf_ref = surface(ref[box])
    surf_pred = surface(pred[box])
    to_pred = ndimage.distance_transform_edt(~surf_pred, sampling=spacing)
    ref_to_pred = to_pred[surf_ref]
    del to_pred
    to_ref = ndimage.distance_transform_edt(~surf_ref, sampling=spacing)
    pred_to_ref = to_ref[surf_pred]
    return ref_to_pred, pred_to_ref


def surface_distance_metrics(reference, prediction, spacing, percentile: float = 95.0) -> dict:
    """Hausdorff, HD95 and average symmetric surface distance in mm (NaN when a mask is empty)."""
    ref_to_pred, pred_to_ref = directed_surface_distances(reference, prediction, spacing)
    if ref_to_pred.size == 0 or pred_to_ref.size == 0:
        return {"hausdorff_mm": NAN, "hd95_mm": NAN, "assd_mm": NAN}
    return {
        "hausdorff_mm": float(max(ref_to_pred.max(), pred_to_ref.max())),
        "hd95_mm": float(max(np.percentile(ref_to_pred, percentile), np.percentile(pred_to_ref, percentile))),
        "assd_mm": float((ref_to_pred.sum() + pred_to_ref.sum()) / (ref_to_pred.size + pred_to_ref.size)),
    }


# -- per volume and per slice ------------------------------------------------------------------
def segmentation_metrics(reference, prediction, spacing, probability=None) -> dict:
    """Every metric of ``prediction`` against ``reference`` over the whole volume.

    Keys: dice, iou, accuracy, sensitivity, precision, auc (NaN without a probability map),
    hausdorff_mm, hd95_mm, assd_mm, volume_reference_mm3, volume_prediction_mm3,
    volume_difference_mm3 (prediction - reference), volume_difference_percent (of the reference),
    n_reference, n_prediction, tp, fp, fn, tn.
    """
    ref, pred = _check_pair(reference, prediction)
    spacing = tuple(float(s) for s in spacing)
    if len(spacing) != ref.ndim or not all(math.isfinite(s) and s > 0 for s in spacing):
        raise VbmdError(f"spacing must be {ref.ndim} positive numbers, got {spacing}")
    counts = confusion_counts(ref, pred)
    n_ref = counts["tp"] + counts["fn"]
    n_pred = counts["tp"] + counts["fp"]
    if n_ref == 0 and n_pred == 0:
        raise VbmdError("both masks are empty: there is nothing to compare")
    out = overlap_from_counts(counts)
    out["auc"] = roc_auc(ref, probability) if probability is not None else NAN
    out.update(surface_distance_metrics(ref, pred, spacing))
    voxel = float(np.prod(spacing))
    v_ref, v_pred = n_ref * voxel, n_pred * voxel
    out["volume_reference_mm3"] = v_ref
    out["volume_prediction_mm3"] = v_pred
    out["volume_difference_mm3"] = v_pred - v_ref
    out["volume_difference_percent"] = 100.0 * (v_pred - v_ref) / v_ref if v_ref else NAN
    out["n_reference"] = n_ref
    out["n_prediction"] = n_pred
    out.update(counts)
    return out


def per_slice_metrics(reference, prediction, spacing) -> list[dict]:
    """Metrics of each axial slice (axis 0) in which either mask has voxels.

    Each dict: slice, dice, iou, hausdorff_mm, hd95_mm, assd_mm (2-D, in-plane spacing),
    area_reference_mm2, area_prediction_mm2, area_difference_mm2 (prediction - reference).
    """
    ref, pred = _check_pair(reference, prediction)
    if ref.ndim != 3:
        raise VbmdError(f"per-slice metrics need 3-D masks, got {ref.ndim}-D")
    spacing = tuple(float(s) for s in spacing)
    box = union_bbox(ref, pred, margin=1)
    if box is None:
        return []
    pixel_area = spacing[1] * spacing[2]
    ref_box, pred_box = ref[:, box[1], box[2]], pred[:, box[1], box[2]]
    rows = []
    present = ref_box.any(axis=(1, 2)) | pred_box.any(axis=(1, 2))
    for z in np.flatnonzero(present):
        r, p = ref_box[z], pred_box[z]
        tp = int(np.count_nonzero(r & p))
        n_r, n_p = int(np.count_nonzero(r)), int(np.count_nonzero(p))
        row = {
            "slice": int(z),
            "dice": 2 * tp / (n_r + n_p),
            "iou": tp / (n_r + n_p - tp),
        }
        row.update(surface_distance_metrics(r, p, spacing[1:]))
        row["area_reference_mm2"] = n_r * pixel_area
        row["area_prediction_mm2"] = n_p * pixel_area
        row["area_difference_mm2"] = (n_p - n_r) * pixel_area
        rows.append(row)
    return rows


def difference_labels(reference, prediction, added: int = 1, missing: int = 2) -> np.ndarray:
    """uint8 labels: ``added`` where only the prediction has voxels, ``missing`` where only the reference."""
    ref, pred = _check_pair(reference, prediction)
    out = np.zeros(ref.shape, dtype=np.uint8)
    out[pred & ~ref] = added
    out[ref & ~pred] = missing
    return out
