"""Short-term (repeat-scan) precision of D100 for a model, as the field reports it.

    python benchmarks/precision.py --family independent|independent3|independent4|independent5|training
        --model default|classical|PATH
        [--n 20] [--repeats 3] [--voi-mm 4] [--cache DIR] [--out docs] [--label NAME]

Each of ``--n`` phantom anatomies is scanned ``--repeats`` times, each time repositioned (in-plane
rotation within +-8 degrees, shift within +-2 mm; the independent family also tilts up to 3
degrees and moves up to 0.3 mm along the bone), with fresh noise and a motion grade of 0-2:

- ``--family independent``: ``benchmarks/independent`` (precision_specs: cropped fields, 0.082 mm
  XtremeCT and 0.061 mm XtremeCT II voxels, both hands, some erosions);
- ``--family independent3``: the third family, ``benchmarks/independent3`` (precision_specs, seeds from
  95 000: cropped fields, 0.082 mm XtremeCT and 0.061 mm XtremeCT II, both hands, some erosions;
  scans named ``prec_indep3_<seed>_r<r>``; docs/independent-phantoms-v3.md);
- ``--family independent4``: the fourth family, ``benchmarks/independent4`` (precision_specs, seeds from
  85 000, the same design; scans named ``prec_indep4_<seed>_r<r>``; docs/independent-phantoms-v4.md);
- ``--family independent5``: the fifth family, ``benchmarks/independent5`` (precision_specs, seeds from
  65 000, the same design; scans named ``prec_indep5_<seed>_r<r>``; docs/independent-phantoms-v5.md);
- ``--family training``: the generator the bundled model was trained on (``napari_vbmd.phantom``,
  ``PhantomSpec.pose_seed``), cropped fields at 0.082 mm, both scanners and hands.

Every scan is read back from disk and segmented by the real pipeline (hand given). D100 is taken
in the whole mask and in the standard VOI (``voi_mm``: ``--voi-mm`` mm proximal from MC2's joint
surface, ``segmentation.postprocess.standard_voi``, the function ``segment(voi_mm=...)`` applies;
checked equal on the first scan). Per anatomy i, CV_i = SD_i / mean_i over its repeats (SD with
n - 1); RMS%CV = sqrt(mean_i CV_i^2) x 100 (Glüer et al. 1995), with the 95 % least significant
change 2.77 x RMS%CV; the same for the truth masks (the truth's own variation under
repositioning). Writes ``<out>/precision-<family>-<label>.json`` and ``.csv``.
"""
from __future__ import annotations

import argparse
import csv
import functools
import importlib
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from napari_vbmd._atomic import atomic_path  # noqa: E402
from napari_vbmd.errors import VbmdError  # noqa: E402
from napari_vbmd.evaluation.metrics import dice  # noqa: E402
from napari_vbmd.io import read_mask, read_scan  # noqa: E402
from napari_vbmd.measure import measure_vbmd  # noqa: E402

TRAINING_FIRST_SEED = 90_000


def _scan(name: str, spec, voxel_mm: float, paths, is_cached, generate, write) -> dict:
    """One repeat scan: what is measured about it, and how its files are found, checked and made."""
    return {"name": name, "anatomy": spec.seed, "hand": spec.hand, "motion": spec.motion_grade,
            "voxel_mm": voxel_mm, "paths": paths,
            "cached": lambda cache: is_cached(cache, name, spec),
            "make": lambda cache: write(generate(spec), cache, name, overwrite=True)}


def family_groups(family: str, prefix: str, n: int, repeats: int) -> list[list[dict]]:
    """The repeat scans of an independent family (a package beside this script with the family interface)."""
    api = importlib.import_module(family)
    return [[_scan(f"{prefix}_{spec.seed}_r{r}", spec, spec.voxel_mm, api.case_paths, api.is_cached, api.generate,
                   api.write_case)
             for r, spec in enumerate(specs)] for specs in api.precision_specs(n, repeats)]


GROUPS = {"independent": functools.partial(family_groups, "independent", "prec_indep"),
          "independent3": functools.partial(family_groups, "independent3", "prec_indep3"),
          "independent4": functools.partial(family_groups, "independent4", "prec_indep4"),
          "independent5": functools.partial(family_groups, "independent5", "prec_indep5")}


def training_specs(n: int, repeats: int):
    from napari_vbmd.phantom import PhantomSpec

    return [[PhantomSpec(seed=TRAINING_FIRST_SEED + a, hand="left" if a % 2 else "right", fov="cropped", n_slices=110,
                         motion_grade=(a + r) % 3, erosions=a % 3 if a % 4 == 3 else 0,
                         scanner="xtremect2" if a % 3 == 1 else "xtremect1", pose_seed=r + 1)
             for r in range(repeats)] for a in range(n)]


def training_groups(n: int, repeats: int) -> list[list[dict]]:
    from napari_vbmd.phantom import generate_phantom, phantom_is_cached, phantom_paths, write_phantom

    return [[_scan(f"prec_train_{spec.seed}_r{r}", spec, spec.spacing_mm, phantom_paths, phantom_is_cached,
                   generate_phantom, write_phantom)
             for r, spec in enumerate(specs)] for specs in training_specs(n, repeats)]


def ensure(cache: Path, groups) -> None:
    for group in groups:
        for case in group:
            if not case["cached"](cache):
                t = time.perf_counter()
                case["make"](cache)
                print(f"wrote {case['name']} ({time.perf_counter() - t:.0f} s)", file=sys.stderr, flush=True)


def _d100_in(image, mask: np.ndarray) -> float:
    return float(measure_vbmd(image, mask.astype(np.uint8)).d100_mg_ha_cm3)


def measure_scan(case: dict, cache: Path, model, voi_mm: float, check_voi: bool) -> dict:
    from napari_vbmd.segmentation.pipeline import segment
    from napari_vbmd.segmentation.postprocess import standard_voi

    paths = case["paths"](cache, case["name"])
    image = read_scan(paths["image"])
    truth = read_mask(paths["mask"], like=image).data.astype(bool)
    truth_voi, _ = standard_voi(truth, image.spacing[0], voi_mm)
    row = {"case": case["name"], "anatomy": case["anatomy"], "hand": case["hand"], "motion": case["motion"],
           "voxel_mm": case["voxel_mm"], "d100_truth": _d100_in(image, truth), "d100_voi_truth": _d100_in(image, truth_voi)}
    t = time.perf_counter()
    try:
        result = segment(image, model=model, hand=case["hand"])
    except VbmdError as exc:
        row.update(d100=float("nan"), d100_voi=float("nan"), dice=0.0, seconds=time.perf_counter() - t, failure=str(exc))
        return row
    predicted = result.mask.data.astype(bool)
    voi_mask, _ = standard_voi(predicted, image.spacing[0], voi_mm)
    if check_voi:  # the pipeline's own VOI option gives the same mask
        assert np.array_equal(segment(image, model=model, hand=case["hand"], voi_mm=voi_mm).mask.data.astype(bool), voi_mask)
    row.update(d100=_d100_in(image, predicted), d100_voi=_d100_in(image, voi_mask), dice=float(dice(truth, predicted)),
               seconds=time.perf_counter() - t, failure="")
    return row


def rms_cv(rows: list[dict], key: str) -> dict:
    """RMS%CV (Glüer 1995) over anatomies with all repeats measured; also RMS SD and the 95 % LSC."""
    by_anatomy: dict = {}
    for r in rows:
        by_anatomy.setdefault(r["anatomy"], []).append(r[key])
    cvs, sds, skipped = [], [], 0
    for values in by_anatomy.values():
        values = np.asarray(values, dtype=float)
        if not np.isfinite(values).all() or values.size < 2:
            skipped += 1
            continue
        sd = values.std(ddof=1)
        sds.append(sd)
        cvs.append(sd / values.mean())
    cvs = np.asarray(cvs)
    rms = float(np.sqrt(np.mean(cvs ** 2)) * 100) if cvs.size else float("nan")
    return {"rms_cv_pct": rms, "lsc95_pct": 2.77 * rms, "rms_sd_mg_ha_cm3": float(np.sqrt(np.mean(np.square(sds)))) if sds else
            float("nan"), "max_cv_pct": float(cvs.max() * 100) if cvs.size else float("nan"),
            "n_anatomies": int(cvs.size), "n_skipped": skipped}


def summary(rows: list[dict]) -> dict:
    errors = np.array([100 * (r["d100"] - r["d100_truth"]) / r["d100_truth"] for r in rows])
    errors_voi = np.array([100 * (r["d100_voi"] - r["d100_voi_truth"]) / r["d100_voi_truth"] for r in rows])
    return {
        "pipeline_whole": rms_cv(rows, "d100"), "pipeline_voi": rms_cv(rows, "d100_voi"),
        "truth_whole": rms_cv(rows, "d100_truth"), "truth_voi": rms_cv(rows, "d100_voi_truth"),
        "n_scans": len(rows), "n_failed": sum(1 for r in rows if r["failure"]),
        "error_mean_pct": float(np.nanmean(errors)), "error_abs_max_pct": float(np.nanmax(np.abs(errors))),
        "error_voi_mean_pct": float(np.nanmean(errors_voi)),
        "dice_mean": float(np.mean([r["dice"] for r in rows])), "dice_min": float(np.min([r["dice"] for r in rows])),
    }


def markdown(s: dict, family: str, label: str, voi_mm: float) -> str:
    def cell(entry):
        return f"{entry['rms_cv_pct']:.2f} % (LSC {entry['lsc95_pct']:.2f} %, RMS SD {entry['rms_sd_mg_ha_cm3']:.2f})"

    return "\n".join([
        f"| family | model | scans | whole bone: pipeline | whole bone: truth | {voi_mm:g} mm VOI: pipeline "
        "| VOI: truth | D100 error mean (max abs) | Dice mean (min) |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {family} | {label} | {s['n_scans']} ({s['n_failed']} refused) | {cell(s['pipeline_whole'])} "
        f"| {cell(s['truth_whole'])} | {cell(s['pipeline_voi'])} | {cell(s['truth_voi'])} "
        f"| {s['error_mean_pct']:+.2f} % ({s['error_abs_max_pct']:.2f} %) | {s['dice_mean']:.4f} ({s['dice_min']:.4f}) |",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--family", choices=(*GROUPS, "training"), required=True)
    parser.add_argument("--model", default="default", help="default, classical, or a checkpoint path")
    parser.add_argument("--label", help="name in the output files (default: the model's name)")
    parser.add_argument("--n", type=int, default=20, help="anatomies (default 20)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--voi-mm", type=float, default=4.0,
                        help="standard VOI length (default 4 mm: within the MC2 every phantom of both families shows)")
    parser.add_argument("--cache", help="phantom folder (default /tmp/vbmd-precision-<family>)")
    parser.add_argument("--out", default=str(Path(__file__).resolve().parent.parent / "docs"))
    parser.add_argument("--generate-only", action="store_true")
    parser.add_argument("--no-nice", action="store_true")
    args = parser.parse_args(argv)
    if args.repeats < 2 or args.n < 1:
        parser.error("need at least one anatomy and two repeats")
    if not args.no_nice:
        os.nice(10)
    cache = Path(args.cache or f"/tmp/vbmd-precision-{args.family}")
    groups = GROUPS.get(args.family, training_groups)(args.n, args.repeats)
    ensure(cache, groups)
    if args.generate_only:
        return 0
    from napari_vbmd.segmentation.models import load

    model = load(args.model, device="cpu")  # a network, or the classical method
    label = args.label or Path(str(args.model)).stem
    rows = []
    for g, group in enumerate(groups):
        for r, case in enumerate(group):
            row = measure_scan(case, cache, model, args.voi_mm, check_voi=(g == 0 and r == 0))
            rows.append(row)
            print(f"{row['case']}: D100 {row['d100']:.1f} (truth {row['d100_truth']:.1f}), VOI {row['d100_voi']:.1f} "
                  f"(truth {row['d100_voi_truth']:.1f}) {row['failure']}", file=sys.stderr, flush=True)
    s = summary(rows)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"precision-{args.family}-{label}"
    with atomic_path(stem.with_suffix(".json")) as tmp:
        Path(tmp).write_text(json.dumps({"family": args.family, "model": str(args.model), "label": label,
                                         "voi_mm": args.voi_mm, "repeats": args.repeats, "summary": s, "scans": rows},
                                        indent=1), encoding="utf-8")
    with atomic_path(stem.with_suffix(".csv")) as tmp:
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    print(markdown(s, args.family, label, args.voi_mm))
    return 0


if __name__ == "__main__":
    sys.exit(main())
