"""Phantoms on disk: the files of one phantom, the cache check, and cohorts (``vbmd phantom``)."""
from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import CancelledError, VbmdError
from .phantom_spec import CROPPED_UNCHANGED_SINCE, GENERATOR_VERSION, Phantom, PhantomSpec, Progress


def phantom_paths(out_dir: str | Path, name: str) -> dict[str, Path]:
    out_dir = Path(out_dir)
    return {"image": out_dir / f"{name}.aim", "mask": out_dir / f"{name}_mask.aim", "truth": out_dir / f"{name}_truth.json"}


def phantom_is_cached(out_dir: str | Path, name: str, spec: PhantomSpec) -> bool:
    """Whether ``<name>`` in ``out_dir`` was written from ``spec`` by a generator version that makes
    the same voxels (so a cache of phantoms from an older generator is made again, not silently
    reused; cropped fields are the same since :data:`CROPPED_UNCHANGED_SINCE`)."""
    import json

    paths = phantom_paths(out_dir, name)
    if not all(p.is_file() for p in paths.values()):
        return False
    try:
        info = json.loads(paths["truth"].read_text())
    except (OSError, ValueError):
        return False
    spec = spec.validated()
    version = info.get("generator_version")
    same_voxels = version == GENERATOR_VERSION or (
        spec.fov == "cropped" and isinstance(version, int) and CROPPED_UNCHANGED_SINCE <= version <= GENERATOR_VERSION)
    if spec.variation == "broad":
        from .phantom_broad import BROAD_VERSION

        same_voxels = version == GENERATOR_VERSION and (info.get("design") or {}).get("broad", {}).get(
            "broad_version") == BROAD_VERSION
    return same_voxels and info.get("spec") == spec.to_dict()


def write_phantom(phantom: Phantom, out_dir: str | Path, name: str, overwrite: bool = False) -> dict[str, Path]:
    """Write ``<name>.aim`` (image), ``<name>_mask.aim`` (truth, char 127) and ``<name>_truth.json``."""
    from . import io
    from ._atomic import write_text_atomic

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise VbmdError(f"cannot create output folder ({exc.strerror})", out_dir) from None
    paths = phantom_paths(out_dir, name)
    if not overwrite:
        for path in paths.values():
            if path.exists():
                raise VbmdError("already exists; refusing to overwrite (use --overwrite)", path)
    io.write_image(paths["image"], phantom.image)
    io.write_mask(paths["mask"], phantom.truth, parent=phantom.image)
    info = dict(phantom.truth_info, files={k: p.name for k, p in paths.items()})
    write_text_atomic(paths["truth"], json.dumps(info, indent=2) + "\n")
    return paths


def case_seed(seed: int, index: int) -> int:
    """Seed of case ``index`` of a cohort with seed ``seed`` (stable across versions and runs)."""
    return int(np.random.SeedSequence([0xC0407, int(seed), int(index)]).generate_state(1)[0])


def cohort_specs(n: int, seed: int = 0, **overrides) -> list[PhantomSpec]:
    """Specs of a varied cohort: hands, motion grades, erosions drawn like the study (~1/4 left)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise VbmdError(f"phantom: number of phantoms must be a positive integer, got {n!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise VbmdError(f"phantom: seed must be a non-negative integer, got {seed!r}")
    specs = []
    for k in range(n):
        rng = np.random.default_rng(case_seed(seed, k))
        values = {
            "seed": case_seed(seed, k),
            "hand": "left" if rng.random() < 0.25 else "right",
            "motion_grade": int(rng.choice([0, 1, 2, 3], p=[0.2, 0.35, 0.2, 0.25])),
            "erosions": int(rng.choice([0, 0, 0, 1, 2, 3])),
        }
        values.update({k2: v for k2, v in overrides.items() if v is not None})
        specs.append(PhantomSpec(**values).validated())
    return specs


COHORT_COLUMNS = ["name", "image", "mask", "truth", "d100_mg_ha_cm3", "mean_slice_area_mm2", "seed", "hand", "fov",
                  "n_slices", "spacing_mm", "motion_grade", "erosions", "d100_target", "scanner", "hand_in_header"]


def cohort_cases(n: int, seed: int = 0, **spec_overrides) -> list[tuple[str, PhantomSpec]]:
    """Names and specs of a cohort. ``hand`` may also be "random" (drawn, ~1/4 left, the default)
    or "both" (every case as a right hand and as its mirror image, ``<name>_right``/``<name>_left``)."""
    hand = spec_overrides.pop("hand", None)
    if hand not in (None, "random", "both", "left", "right"):
        raise VbmdError(f"phantom: hand must be left, right, both or random, got {hand!r}")
    fixed = hand if hand in ("left", "right") else None
    specs = cohort_specs(n, seed, hand=fixed, **spec_overrides)
    cases = []
    for k, spec in enumerate(specs):
        name = f"phantom_{seed}_{k:03d}"
        if hand == "both":
            cases += [(f"{name}_{side}", dataclasses.replace(spec, hand=side)) for side in ("right", "left")]
        else:
            cases.append((name, spec))
    return cases


def generate_cohort(out_dir: str | Path, n: int, seed: int = 0, overwrite: bool = False,
                    progress: Progress | None = None, cancel: Callable[[], bool] | None = None,
                    **spec_overrides) -> list[dict]:
    """Write ``n`` phantoms and ``cohort.csv``; returns one row per case (name, files, D100, spec).

    ``progress(k, total, message)`` is called before each case (k cases done) and after it (k + 1).
    Nothing is written when any output already exists (unless ``overwrite``)."""
    from ._atomic import write_text_atomic
    from .phantom import generate_phantom

    cases = cohort_cases(n, seed, **spec_overrides)
    out_dir = Path(out_dir)
    index_path = out_dir / "cohort.csv"
    if not overwrite:
        for name, _ in cases:
            for path in phantom_paths(out_dir, name).values():
                if path.exists():
                    raise VbmdError("already exists; refusing to overwrite (use --overwrite)", path)
        if index_path.exists():
            raise VbmdError("already exists; refusing to overwrite (use --overwrite)", index_path)
    rows = []
    total = len(cases)
    for k, (name, spec) in enumerate(cases):
        if cancel is not None and cancel():
            raise CancelledError()
        if progress is not None:
            progress(k, total, f"generating {name} ({spec.hand} hand, {spec.fov} field, {spec.n_slices} slices)")
        phantom = generate_phantom(spec, cancel=cancel)
        paths = write_phantom(phantom, out_dir, name, overwrite=overwrite)
        info = phantom.truth_info
        rows.append({
            "name": name,
            "image": str(paths["image"]),
            "mask": str(paths["mask"]),
            "truth": str(paths["truth"]),
            "d100_mg_ha_cm3": info["d100_mg_ha_cm3"],
            "mean_slice_area_mm2": info["mean_slice_area_mm2"],
            **{key: value for key, value in spec.to_dict().items()},
            "hand_in_header": spec.hand_in_header,
        })
        if progress is not None:
            progress(k + 1, total, f"wrote {name}")
    import io as _io

    buffer = _io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=COHORT_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({c: (Path(row[c]).name if c in ("image", "mask", "truth") else row[c]) for c in COHORT_COLUMNS})
    write_text_atomic(index_path, buffer.getvalue())
    return rows
