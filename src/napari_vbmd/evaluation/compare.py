"""Compare two masks of one scan: every metric, the vBMD under each, and where they differ.

Engine code behind napari's compare widget (no napari, no Qt).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import VbmdError
from ..measure import VbmdResult, measure_vbmd
from ..scan import Scan, align_mask
from .metrics import difference_labels, segmentation_metrics

#: Labels of the difference overlay.
ADDED = 1  # in the second (predicted) mask only
MISSING = 2  # in the first (reference) mask only


@dataclass
class MaskComparison:
    metrics: dict
    vbmd_reference: VbmdResult | None
    vbmd_predicted: VbmdResult | None
    vbmd_errors: dict  # "reference"/"predicted" -> why there is no vBMD
    difference: np.ndarray  # uint8 on ``grid``: ADDED, MISSING, 0 elsewhere
    grid: Scan  # the grid everything is on (the scan's, or the reference mask's without a scan)

    def summary_rows(self) -> list[tuple[str, str]]:
        m = self.metrics

        def f(value, digits):
            return "–" if value is None or not np.isfinite(value) else f"{value:.{digits}f}"

        rows = [
            ("Dice", f(m["dice"], 4)),
            ("IoU", f(m["iou"], 4)),
            ("HD95 (mm)", f(m["hd95_mm"], 3)),
            ("ASSD (mm)", f(m["assd_mm"], 3)),
            ("Hausdorff (mm)", f(m["hausdorff_mm"], 3)),
            ("Volume reference (mm³)", f(m["volume_reference_mm3"], 1)),
            ("Volume predicted (mm³)", f(m["volume_prediction_mm3"], 1)),
            ("Volume difference", f"{f(m['volume_difference_mm3'], 1)} mm³ ({f(m['volume_difference_percent'], 2)} %)"),
            ("Added voxels", str(m["fp"])),
            ("Missing voxels", str(m["fn"])),
        ]
        for name, result in (("reference", self.vbmd_reference), ("predicted", self.vbmd_predicted)):
            if result is not None:
                rows.append((f"D100 {name} (mg HA/cm³)", f(result.d100_mg_ha_cm3, 2)))
            else:
                rows.append((f"D100 {name}", self.vbmd_errors.get(name, "–")))
        if self.vbmd_reference is not None and self.vbmd_predicted is not None:
            rows.append(("D100 difference (pred − ref)",
                         f(self.vbmd_predicted.d100_mg_ha_cm3 - self.vbmd_reference.d100_mg_ha_cm3, 2)))
        return rows


def compare_masks(reference: Scan, predicted: Scan, image: Scan | None = None) -> MaskComparison:
    """Metrics of ``predicted`` against ``reference``; vBMD of ``image`` under both when given.

    With a scan, both masks are placed on its grid (they may be crops of it); without one they must
    share a grid.
    """
    if image is not None:
        try:
            ref = align_mask(reference, image)
        except VbmdError as exc:
            raise VbmdError(f"reference mask: {exc}") from None
        try:
            pred = align_mask(predicted, image)
        except VbmdError as exc:
            raise VbmdError(f"predicted mask: {exc}") from None
        grid = image
    else:
        if not reference.same_grid(predicted):
            raise VbmdError("the two masks lie on different grids; choose the scan they belong to")
        ref, pred = np.asarray(reference.data) != 0, np.asarray(predicted.data) != 0
        grid = reference
    metrics = segmentation_metrics(ref, pred, grid.spacing)
    vbmd = {"reference": None, "predicted": None}
    errors = {}
    if image is None:
        errors = {"reference": "no scan", "predicted": "no scan"}
    else:
        for name, mask in (("reference", ref), ("predicted", pred)):
            try:
                vbmd[name] = measure_vbmd(image, mask)
            except VbmdError as exc:
                errors[name] = str(exc)
    return MaskComparison(
        metrics=metrics,
        vbmd_reference=vbmd["reference"],
        vbmd_predicted=vbmd["predicted"],
        vbmd_errors=errors,
        difference=difference_labels(ref, pred, added=ADDED, missing=MISSING),
        grid=grid,
    )
