"""Training data: image/mask pairs from a folder or a CSV, split by patient, prepared exactly like
the inference pipeline prepares a scan (bone crop, right-hand orientation, working grid)."""
from __future__ import annotations

import csv
import dataclasses
import json
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import VbmdError
from ..naming import TRAINING_IMAGE_SUFFIXES, scan_stem, scan_suffix, training_mask_candidates
from ..scan import Scan
from .preprocess import find_bone_box, resample_volume



@dataclass(frozen=True)
class Pair:
    case: str
    image: Path
    mask: Path
    patient: str
    hand: str | None = None  # a CSV's hand column; else the image's header, else the image decides


def _patient_of(case: str, image: Path) -> str:
    """The patient a case belongs to: a `patient` entry in `<case>.json` beside the image, else the
    case name without a trailing hand/visit tag (`_L`, `_R`, `_left`, `_right`, `_v2`)."""
    sidecar = image.parent / f"{case}.json"
    if sidecar.is_file():
        try:
            data = json.loads(sidecar.read_text(encoding="utf-8"))
            for key in ("patient", "patient_id"):
                if isinstance(data, dict) and data.get(key) not in (None, ""):
                    return str(data[key])
        except (OSError, ValueError):
            pass
    return re.sub(r"(_(l|r|left|right|v\d+))+$", "", case, flags=re.IGNORECASE) or case


def find_pairs(data: str | Path) -> list[Pair]:
    """Pairs from a folder (``<case>.aim`` + ``<case>_mask.aim`` or ``<case>.gobj`` ...) or a CSV
    with columns ``image,mask[,patient][,hand]`` (paths relative to the CSV's folder; ``hand`` left
    or right, for scans whose header does not say)."""
    data = Path(data)
    if not data.exists():
        raise VbmdError("training data not found", data)
    pairs: list[Pair] = []
    if data.is_file():
        if data.suffix.lower() != ".csv":
            raise VbmdError("training data must be a folder or a CSV of image,mask pairs", data)
        with open(data, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            if not reader.fieldnames or not {"image", "mask"} <= set(reader.fieldnames):
                raise VbmdError("the CSV needs the columns image and mask (and optionally patient)", data)
            for row_number, row in enumerate(reader, 2):
                image = (data.parent / row["image"]).resolve() if not Path(row["image"]).is_absolute() else Path(row["image"])
                mask = (data.parent / row["mask"]).resolve() if not Path(row["mask"]).is_absolute() else Path(row["mask"])
                for p in (image, mask):
                    if not p.exists():
                        raise VbmdError(f"line {row_number}: file not found: {p}", data)
                case = scan_stem(image.name, TRAINING_IMAGE_SUFFIXES) or image.stem
                patient = (row.get("patient") or "").strip() or _patient_of(case, image)
                hand = (row.get("hand") or "").strip().lower() or None
                if hand not in (None, "left", "right"):
                    raise VbmdError(f"line {row_number}: hand must be left or right, got {row['hand']!r}", data)
                pairs.append(Pair(case, image, mask, patient, hand))
    else:
        for image in sorted(data.iterdir()):
            suffix = scan_suffix(image.name, TRAINING_IMAGE_SUFFIXES)
            case = scan_stem(image.name, TRAINING_IMAGE_SUFFIXES)
            if not case or not image.is_file() or case.endswith("_mask"):
                continue
            mask = next((p for p in training_mask_candidates(image.parent, case, suffix) if p.is_file()), None)
            if mask is not None:
                pairs.append(Pair(case, image, mask, _patient_of(case, image)))
    if not pairs:
        raise VbmdError("no image/mask pairs found (expected <case>.aim with <case>_mask.aim or <case>.gobj, "
                        "or a CSV with image,mask columns)", data)
    return pairs


def split_by_patient(pairs: list[Pair], seed: int, fractions=(0.7, 0.2, 0.1)) -> dict[str, list[Pair]]:
    """Seeded 70/20/10 split of *patients* (all cases of a patient land in one split)."""
    patients = sorted({p.patient for p in pairs})
    rng = np.random.default_rng(seed)
    order = [patients[i] for i in rng.permutation(len(patients))]
    n = len(order)
    if n < 2:
        raise VbmdError(f"training needs at least 2 patients (one for validation), got {n}")
    n_test = int(round(fractions[2] * n)) if n >= 10 else (1 if n >= 4 else 0)
    n_val = max(1, int(round(fractions[1] * n)))
    n_train = n - n_val - n_test
    if n_train < 1:
        raise VbmdError(f"too few patients ({n}) for a training/validation/test split")
    groups = {"train": order[:n_train], "val": order[n_train : n_train + n_val], "test": order[n_train + n_val :]}
    return {name: [p for p in pairs if p.patient in set(members)] for name, members in groups.items()}


@dataclass
class PreparedCase:
    case: str
    image: np.ndarray  # (z, h, w) densities (mg HA/cm³) on the working grid, right-hand oriented
    mask: np.ndarray  # (z, h, w) float32 fraction of MC2 in each working voxel
    spacing_z: float = 1.0  # mm between the slices of ``image`` (native for 2D, working for 3D)


def load_pair(pair: Pair) -> tuple[Scan, np.ndarray]:
    """Read a pair and put the mask on the image's grid by geometry; mismatches are errors."""
    from ..io import read_mask, read_scan

    image = read_scan(pair.image)
    if image.kind != "image":
        raise VbmdError(f"pair {pair.case}: the image is a mask", pair.image)
    try:
        aligned = read_mask(pair.mask, like=image)
    except VbmdError as exc:
        raise VbmdError(f"pair {pair.case}: mask {pair.mask.name} does not fit image {pair.image.name}: {exc.problem}",
                        pair.mask) from None
    inside = np.asarray(aligned.data) != 0
    if inside.shape != image.shape:
        raise VbmdError(f"pair {pair.case}: mask {pair.mask.name} is not on the grid of image {pair.image.name}",
                        pair.mask)
    if not inside.any():
        raise VbmdError(f"pair {pair.case}: mask {pair.mask.name} is empty on image {pair.image.name}", pair.mask)
    return with_known_hand(image, pair), inside


def with_known_hand(image: Scan, pair: Pair) -> Scan:
    """``image`` with its hand set: the pair's (a CSV's hand column), else the header's, else the
    image's (a whole-hand field); a pair nothing decides is refused, never taken for a right hand."""
    from .hand import resolve_hand

    decision = resolve_hand(image, None, pair.hand)
    if not decision.decided:
        raise VbmdError(f"pair {pair.case}: cannot tell which hand it is ({decision.reason}); give it in a hand "
                        "column (left/right) of a pairs CSV", pair.image)
    return dataclasses.replace(image, hand=decision.hand)


def prepare_case(image: Scan, inside: np.ndarray, spacing_mm, dims: int, margin_mm: float, case: str = "") -> PreparedCase:
    """A training case on the working grid, by the pipeline's own stage (:func:`.stages.to_working`):
    the bone box (grown to hold the whole truth), the image's hand (:func:`load_pair` sets it;
    refused when unknown), densities and mask fractions resampled alike."""
    from .stages import WorkingGrid, resample_to_working, to_working

    box = find_bone_box(image, margin_mm=margin_mm)
    # the whole MC2 must be inside the crop even where the bone search was conservative
    zs, ys, xs = (np.flatnonzero(inside.any(axis=a)) for a in ((1, 2), (0, 2), (0, 1)))
    box = dataclasses.replace(
        box, z0=min(box.z0, int(zs[0])), z1=max(box.z1, int(zs[-1]) + 1), y0=min(box.y0, int(ys[0])),
        y1=max(box.y1, int(ys[-1]) + 1), x0=min(box.x0, int(xs[0])), x1=max(box.x1, int(xs[-1]) + 1),
    )
    if image.hand not in ("left", "right"):
        raise VbmdError(f"case {case}: the hand is unknown (the pipeline mirrors left hands; give it)", image.source)
    work = to_working(image, box, image.hand, WorkingGrid(spacing_mm, dims))
    mask = resample_to_working(inside[box.slices].astype(np.float32), work.hw, work.mirrored)
    spacing_z = float(image.spacing[0])
    if dims == 3:
        mask = resample_volume(mask, work.data.shape)
        spacing_z = box.shape[0] * spacing_z / work.data.shape[0]
    return PreparedCase(case, np.ascontiguousarray(work.data, np.float32),
                        np.ascontiguousarray(np.clip(mask, 0, 1), np.float32), spacing_z)
