"""Evaluate predicted masks against reference masks over a set of scans.

Cases come from three folders matched by case id, or from a CSV naming the files of each case.
Each case is read, both masks are placed on the scan's grid, every segmentation metric is computed
(per volume and per axial slice) and the vBMD (D100) is measured under both masks. A case that
cannot be evaluated fails on its own: its row carries the error and the others go on.

Engine code: no napari, no Qt.
"""
from __future__ import annotations

import csv
import dataclasses
import io as _io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import CancelledError, VbmdError
from ..naming import case_id_of
from ..util import is_finite_number
from .agreement import agreement
from .metrics import per_slice_metrics, segmentation_metrics

#: Metrics of the per-case table, in the report's order, with their labels.
METRIC_LABELS = {
    "dice": "Dice",
    "iou": "IoU",
    "accuracy": "Pixel accuracy",
    "auc": "AUC",
    "sensitivity": "Sensitivity",
    "precision": "Precision",
    "hd95_mm": "HD95 (mm)",
    "hausdorff_mm": "Hausdorff (mm)",
    "assd_mm": "ASSD (mm)",
    "volume_difference_mm3": "Volume difference (mm³)",
    "volume_difference_percent": "Volume difference (%)",
    "d100_reference": "D100 reference (mg HA/cm³)",
    "d100_predicted": "D100 predicted (mg HA/cm³)",
    "d100_difference": "D100 difference (mg HA/cm³)",
}

CASE_COLUMNS = [
    "case", "status", "error", "note", "image", "reference", "predicted", "probability", "hand", "hand_source",
    "dice", "iou", "accuracy", "auc", "sensitivity", "precision", "hausdorff_mm", "hd95_mm", "assd_mm",
    "volume_reference_mm3", "volume_prediction_mm3", "volume_difference_mm3", "volume_difference_percent",
    "d100_reference", "d100_predicted", "d100_difference", "sd_reference", "sd_predicted",
    "n_slices_reference", "n_slices_predicted", "tp", "fp", "fn", "tn", "worst_slice", "worst_slice_dice",
]

SLICE_COLUMNS = [
    "case", "slice", "dice", "iou", "hausdorff_mm", "hd95_mm", "assd_mm",
    "area_reference_mm2", "area_prediction_mm2", "area_difference_mm2",
]

Progress = Callable[[int, int, str], None]


@dataclass
class EvaluationCase:
    """The files of one case; ``error`` is set when matching already failed (e.g. no reference)."""

    case_id: str
    image: Path | None = None
    reference: Path | None = None
    predicted: Path | None = None
    probability: Path | None = None
    error: str | None = None


@dataclass
class SlicePreview:
    """A 2-D crop of the worst slice of a case: densities and both masks, for the report."""

    slice_index: int
    density: np.ndarray
    reference: np.ndarray
    predicted: np.ndarray
    spacing_yx: tuple[float, float]


@dataclass
class CaseResult:
    case: EvaluationCase
    row: dict
    slices: list[dict] = field(default_factory=list)
    preview: SlicePreview | None = None

    @property
    def ok(self) -> bool:
        return self.row["status"] == "ok"


# -- finding cases ------------------------------------------------------------------------------
def _scan_folder(folder: Path, what: str) -> dict[str, list[tuple[Path, bool]]]:
    if not folder.is_dir():
        raise VbmdError(f"{what} folder does not exist", folder)
    found: dict[str, list[tuple[Path, bool]]] = {}
    for path in sorted(folder.iterdir()):
        parsed = case_id_of(path)
        if parsed is None:
            continue
        case_id, has_role = parsed
        found.setdefault(case_id.lower(), []).append((path, has_role))
    return found


def _pick(candidates: list[tuple[Path, bool]] | None, what: str, exclude: Path | None) -> Path:
    if not candidates:
        raise VbmdError(f"no {what} found")
    if exclude is not None:
        candidates = [c for c in candidates if c[0].resolve() != exclude.resolve()] or candidates
    if len(candidates) > 1:
        with_role = [c for c in candidates if c[1]]
        candidates = with_role or candidates
    if len(candidates) > 1:
        raise VbmdError(f"several {what} files match: {', '.join(c[0].name for c in candidates)}")
    return candidates[0][0]


def cases_from_folders(images, reference, predicted, probability=None) -> list[EvaluationCase]:
    """Match scans, reference masks, predicted masks (and probability maps) by case id.

    A case id is the file name without its extension and without a trailing role word such as
    ``_mask``, ``_seg`` or ``_pred`` (``C0001.aim`` and ``C0001_mask.aim`` are both case
    ``C0001``); ids match without regard to case. In the scan folder, names with a role word are
    not scans, so a folder holding scans and masks side by side works as both.
    """
    images, reference, predicted = Path(images), Path(reference), Path(predicted)
    image_files = {k: [c for c in v if not c[1]] for k, v in _scan_folder(images, "scan").items()}
    image_files = {k: v for k, v in image_files.items() if v}
    ref_files = _scan_folder(reference, "reference mask")
    pred_files = _scan_folder(predicted, "predicted mask")
    prob_files = _scan_folder(Path(probability), "probability map") if probability else {}
    if not image_files:
        raise VbmdError("no scans found (AIM, ISQ, NIfTI, TIFF files or DICOM folders)", images)
    cases = []
    for key in sorted(image_files):
        image_candidates = image_files[key]
        case = EvaluationCase(case_id=image_candidates[0][0].name if image_candidates[0][0].is_dir()
                              else case_id_of(image_candidates[0][0])[0])
        try:
            case.image = _pick(image_candidates, "scan", None)
            case.reference = _pick(ref_files.get(key), "reference mask", case.image)
            excluded = {case.image.resolve(), case.reference.resolve()}
            pred_candidates = [c for c in pred_files.get(key, []) if c[0].resolve() not in excluded]
            case.predicted = _pick(pred_candidates, "predicted mask", None)
            if probability:
                prob_candidates = [c for c in prob_files.get(key, []) if c[0].resolve() not in excluded
                                   and c[0].resolve() != case.predicted.resolve()]
                if prob_candidates:  # a probability map is optional: without one the AUC is blank
                    case.probability = _pick(prob_candidates, "probability map", None)
        except VbmdError as exc:
            case.error = str(exc)
        cases.append(case)
    for key in sorted(set(pred_files) - set(image_files)):
        for path, _ in pred_files[key]:
            if path.parent.resolve() != images.resolve():
                cases.append(EvaluationCase(case_id=case_id_of(path)[0], predicted=path,
                                            error=f"no scan named like {path.name} in {images}"))
    return cases


def cases_from_csv(path) -> list[EvaluationCase]:
    """Cases from a CSV with columns case, image, reference, predicted[, probability].

    Relative paths are relative to the CSV's folder. Rows with a missing cell become failed cases.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise VbmdError("no such file", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VbmdError(f"cannot read as a text CSV ({exc})", path) from None
    rows = [r for r in csv.reader(_io.StringIO(text)) if any(cell.strip() for cell in r)]
    if not rows:
        raise VbmdError("the CSV is empty", path)
    header = [cell.strip().lower() for cell in rows[0]]
    required = ["case", "image", "reference", "predicted"]
    missing = [c for c in required if c not in header]
    if missing:
        raise VbmdError(
            f"missing column(s) {', '.join(missing)}; need case,image,reference,predicted[,probability]", path
        )
    if len(rows) == 1:
        raise VbmdError("the CSV has a header but no cases", path)
    index = {name: header.index(name) for name in required + (["probability"] if "probability" in header else [])}
    base = path.parent
    cases = []
    seen = set()
    for line, row in enumerate(rows[1:], start=2):
        cells = {name: (row[i].strip() if i < len(row) else "") for name, i in index.items()}
        case = EvaluationCase(case_id=cells["case"] or f"row {line}")
        for name in ("image", "reference", "predicted", "probability"):
            value = cells.get(name, "")
            if value:
                setattr(case, name, Path(value) if Path(value).is_absolute() else base / value)
        empty = [name for name in ("case", "image", "reference", "predicted") if not cells[name]]
        if empty:
            case.error = f"row {line} of {path.name}: no {', '.join(empty)}"
        elif case.case_id in seen:
            case.error = f"row {line} of {path.name}: case id {case.case_id!r} appears twice"
        seen.add(case.case_id)
        cases.append(case)
    return cases


# -- one case -----------------------------------------------------------------------------------
def _empty_row(case: EvaluationCase) -> dict:
    row = {name: None for name in CASE_COLUMNS}
    row.update(
        case=case.case_id,
        image=str(case.image) if case.image else None,
        reference=str(case.reference) if case.reference else None,
        predicted=str(case.predicted) if case.predicted else None,
        probability=str(case.probability) if case.probability else None,
    )
    return row


def _probability_on_grid(path: Path, image) -> np.ndarray:
    """A probability map as float32 on the scan's grid; a crop with an offset of whole voxels is
    placed into zeros. Only ranks matter for the AUC, so the map's scale (0-1, 0-255) is kept."""
    from ..io import read_scan

    prob = read_scan(path)
    data = np.asarray(prob.data, dtype=np.float32)
    if prob.shape == image.shape:
        return data
    if not np.allclose(prob.spacing, image.spacing, rtol=1e-3):
        raise VbmdError("probability map's voxel size differs from the scan's", path)
    shift = (np.array(prob.origin) - np.array(image.origin)) / np.array(image.spacing)
    index = np.round(shift).astype(int)
    if np.any(np.abs(shift - index) > 0.01):
        raise VbmdError("probability map's grid does not align with the scan's", path)
    out = np.zeros(image.shape, dtype=np.float32)
    src, dst = [], []
    for axis in range(3):
        lo, hi = max(index[axis], 0), min(index[axis] + prob.shape[axis], image.shape[axis])
        if hi <= lo:
            raise VbmdError("probability map lies outside the scan", path)
        dst.append(slice(lo, hi))
        src.append(slice(lo - index[axis], hi - index[axis]))
    out[tuple(dst)] = data[tuple(src)]
    return out


def _preview(density_slice: np.ndarray, ref: np.ndarray, pred: np.ndarray, z: int, spacing, margin: int = 12):
    both = ref | pred
    ys, xs = np.nonzero(both)
    y0, y1 = max(ys.min() - margin, 0), min(ys.max() + 1 + margin, both.shape[0])
    x0, x1 = max(xs.min() - margin, 0), min(xs.max() + 1 + margin, both.shape[1])
    return SlicePreview(
        slice_index=int(z),
        density=np.asarray(density_slice[y0:y1, x0:x1], dtype=np.float32),
        reference=ref[y0:y1, x0:x1].copy(),
        predicted=pred[y0:y1, x0:x1].copy(),
        spacing_yx=(float(spacing[1]), float(spacing[2])),
    )


def evaluate_case(case: EvaluationCase, load_image: Callable | None = None) -> CaseResult:
    """Every metric and both vBMDs of one case. Raises VbmdError for unreadable or mismatched input."""
    from ..io import read_mask, read_scan
    from ..measure import measure_vbmd
    from ..scan import align_mask

    if case.error:
        raise VbmdError(case.error)
    image = (load_image or read_scan)(case.image)
    if image.kind != "image":
        raise VbmdError("is a mask, not a greyscale scan", case.image)
    try:
        reference = align_mask(read_mask(case.reference), image)
    except VbmdError as exc:
        raise VbmdError(f"reference mask: {exc}") from None
    try:
        predicted_scan = read_mask(case.predicted)
        predicted = align_mask(predicted_scan, image)
    except VbmdError as exc:
        raise VbmdError(f"predicted mask: {exc}") from None
    if not reference.any():
        raise VbmdError("the reference mask is empty", case.reference)
    probability = _probability_on_grid(case.probability, image) if case.probability else None

    row = _empty_row(case)
    row["hand"], row["hand_source"] = _predicted_hand(predicted_scan, image)
    metrics = segmentation_metrics(reference, predicted, image.spacing, probability=probability)
    for key in CASE_COLUMNS:
        if key in metrics:
            row[key] = metrics[key]
    vbmd_ref = measure_vbmd(image, reference)
    row["d100_reference"] = vbmd_ref.d100_mg_ha_cm3
    row["sd_reference"] = vbmd_ref.sd_mg_ha_cm3
    row["n_slices_reference"] = vbmd_ref.n_slices
    if predicted.any():
        vbmd_pred = measure_vbmd(image, predicted)
        row["d100_predicted"] = vbmd_pred.d100_mg_ha_cm3
        row["sd_predicted"] = vbmd_pred.sd_mg_ha_cm3
        row["n_slices_predicted"] = vbmd_pred.n_slices
        row["d100_difference"] = vbmd_pred.d100_mg_ha_cm3 - vbmd_ref.d100_mg_ha_cm3
    else:
        row["note"] = "the predicted mask is empty: no vBMD"
        row["d100_predicted"] = row["d100_difference"] = float("nan")

    slices = per_slice_metrics(reference, predicted, image.spacing)
    for s in slices:
        s["case"] = case.case_id
    preview = None
    if slices:
        # The slice where the masks disagree over the largest area: an end slice present in one
        # mask only has Dice 0 but shows little; the largest disagreement shows the error.
        worst = max(slices, key=lambda s: (s["area_reference_mm2"] + s["area_prediction_mm2"]) * (1 - s["dice"]))
        row["worst_slice"] = worst["slice"]
        row["worst_slice_dice"] = worst["dice"]
        z = worst["slice"]
        density_slice = dataclasses.replace(image, data=image.data[z:z + 1]).density()[0]
        preview = _preview(density_slice, reference[z], predicted[z], z, image.spacing)
    row["status"] = "ok"
    return CaseResult(case=case, row=row, slices=slices, preview=preview)


def _predicted_hand(predicted, image) -> tuple[str | None, str | None]:
    """The side the predicted mask was made for and where that came from, as its file records it
    (``vbmd segment`` writes both), else the hand its or the scan's header states."""
    from ..io.aim import segmented_hand_from_log

    found = segmented_hand_from_log(predicted.header.get("processing_log", ""))
    if found:
        return found
    hand = predicted.hand or image.hand
    return (hand, "header") if hand else (None, None)


def failed_result(case: EvaluationCase, message: str) -> CaseResult:
    row = _empty_row(case)
    row["status"] = "failed"
    row["error"] = message
    return CaseResult(case=case, row=row)


def evaluate_cases(cases: list[EvaluationCase], load_image: Callable | None = None,
                   progress: Progress | None = None, cancel: Callable[[], bool] | None = None) -> list[CaseResult]:
    """Evaluate every case; a case that fails gets a failed row with a one-line error."""
    results = []
    for i, case in enumerate(cases):
        if cancel is not None and cancel():
            raise CancelledError("evaluation cancelled")
        if progress is not None:
            progress(i, len(cases), f"case {case.case_id}")
        try:
            results.append(evaluate_case(case, load_image=load_image))
        except VbmdError as exc:
            results.append(failed_result(case, str(exc)))
        except MemoryError:
            results.append(failed_result(case, "out of memory"))
        except Exception as exc:  # noqa: BLE001 - one broken file must not stop the study
            results.append(failed_result(case, f"internal error: {type(exc).__name__}: {exc}"))
    if progress is not None:
        progress(len(cases), len(cases), "done")
    return results


# -- summary ------------------------------------------------------------------------------------
def describe_values(values) -> dict:
    arr = np.asarray([v for v in values if is_finite_number(v)], dtype=np.float64)
    if arr.size == 0:
        return {"n": 0, "mean": None, "sd": None, "median": None, "min": None, "max": None}
    return {
        "n": int(arr.size),
        "mean": float(arr.mean()),
        "sd": float(arr.std(ddof=1)) if arr.size > 1 else None,
        "median": float(np.median(arr)),
        "min": float(arr.min()),
        "max": float(arr.max()),
    }


def summarize(results: list[CaseResult]) -> dict:
    """Table 1 (mean, SD, median, range of every metric over the cases) and D100 agreement.

    Agreement compares the predicted against the reference D100: differences are predicted minus
    reference (positive = the prediction measures denser bone).
    """
    ok = [r for r in results if r.ok]
    summary = {
        "n_cases": len(results),
        "n_evaluated": len(ok),
        "n_failed": len(results) - len(ok),
        "failed": [{"case": r.row["case"], "error": r.row["error"]} for r in results if not r.ok],
        "metrics": {key: describe_values(r.row[key] for r in ok) for key in METRIC_LABELS},
        "d100_agreement": None,
        "d100_agreement_error": None,
    }
    pairs = [(r.row["d100_predicted"], r.row["d100_reference"]) for r in ok
             if is_finite_number(r.row["d100_predicted"]) and is_finite_number(r.row["d100_reference"])]
    if len(pairs) >= 3:
        try:
            result = agreement(np.array(pairs), ["predicted", "reference"])
            summary["d100_agreement"] = result
        except VbmdError as exc:
            summary["d100_agreement_error"] = str(exc)
    else:
        summary["d100_agreement_error"] = f"needs at least 3 cases with both D100 values, got {len(pairs)}"
    summary["worst_cases"] = [r.row["case"] for r in worst_cases(results)]
    return summary


def worst_cases(results: list[CaseResult], count: int = 5) -> list[CaseResult]:
    """The evaluated cases with the lowest Dice (then the largest HD95)."""
    ok = [r for r in results if r.ok]
    hd = lambda r: r.row["hd95_mm"] if is_finite_number(r.row["hd95_mm"]) else float("inf")  # noqa: E731
    return sorted(ok, key=lambda r: (r.row["dice"], -hd(r)))[:count]


def _csv_text(rows: list[dict], columns: list[str]) -> str:
    buffer = _io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        cells = []
        for name in columns:
            value = row.get(name)
            if value is None or (isinstance(value, float) and math.isnan(value)):
                cells.append("")
            elif isinstance(value, float):
                cells.append(f"{value:.10g}")
            else:
                cells.append(str(value))
        writer.writerow(cells)
    return buffer.getvalue()


def cases_csv_text(results: list[CaseResult]) -> str:
    return _csv_text([r.row for r in results], CASE_COLUMNS)


def slices_csv_text(results: list[CaseResult]) -> str:
    return _csv_text([s for r in results for s in r.slices], SLICE_COLUMNS)
