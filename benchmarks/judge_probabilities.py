"""Judge candidates that change what happens to a model's probabilities, not the networks: the mean of two
models' probabilities (docs/default-model.md, "Candidate G") or of one model read at four phases of its
working grid ("Candidate H"), each finished at any threshold and band.

    python benchmarks/judge_probabilities.py cache SET CACHE_DIR --model S=default --model E=runs/e/default.json
    python benchmarks/judge_probabilities.py cache SET CACHE_DIR --model S=default --grid-phases
    python benchmarks/judge_probabilities.py score SET CACHE_DIR OUT.csv S:0.4:0.25 S+E:0.5:0.25 S@phases:0.4:0.25

SET is ``study:FIRST_SEED:N`` or ``broad:FIRST_SEED:N`` (phantoms as benchmarks/eval_default_model.py makes
them, written once to ``--phantoms``, default /tmp/vbmd-judge-phantoms), optionally ``:K0-K1`` for a part of
the set (its cases keep the whole set's pattern), or ``independent4:N`` / ``independent5:N`` (the fourth or
fifth family's evaluation cases, hand given, in /tmp/vbmd-independent4-eval or /tmp/vbmd-independent5-eval
unless ``--phantoms``).

``cache`` runs the real pipeline per case and model (``segment(..., keep_probability=True)``, band 0, the
threshold lowered to 0.1 so that nothing is refused for emptiness) and keeps the probabilities on the crop
(uint8, one .npz per case; a case already cached is skipped). ``--grid-phases`` also keeps the mean over the
crop shifted by 0 or round(0.15 mm / voxel size) voxels in y, in x and in both (each run brought back to the
unshifted crop). A refusal is recorded, and scores as a miss.

``score`` finishes the kept probabilities with the pipeline's own ``stages.finish`` (threshold, hole
filling, largest component, joint split, boundary refinement) at each ``LABEL:THRESHOLD:BAND``; LABEL is a
cached model, ``A+B`` the mean of two, or ``A@phases``. Dice against the truth on the crop and D100 from the
crop's densities by ``calibrate.mask_scores``, as ``calibrate_refinement.py`` scores them. What the pipeline
checks after finishing (a mask not on MC2 in a whole-hand field) is not applied here.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

from napari_vbmd._atomic import atomic_path
from napari_vbmd.errors import VbmdError
from napari_vbmd.io import read_mask, read_scan
from napari_vbmd.segmentation import stages
from napari_vbmd.segmentation.calibrate import LINE_DICE, LINE_ERROR_PCT, mask_scores
from napari_vbmd.segmentation.preprocess import Box, density_block

sys.path.insert(0, str(Path(__file__).resolve().parent))
import eval_default_model as default_family  # noqa: E402

HALF_WORKING_PIXEL_MM = 0.15


def cases_for(text: str, phantoms: str | None) -> list[tuple[str, str, str, str, str | None]]:
    """(name, image, mask, truth.json, hand or None to read it from the header) per case of ``text``."""
    parts = text.split(":")
    if parts[0] in ("study", "broad"):
        first, n = int(parts[1]), int(parts[2])
        make = default_family.broad_held_out_specs if parts[0] == "broad" else default_family.held_out_specs
        specs = make(n, first)
        if len(parts) > 3:
            k0, k1 = (int(v) for v in parts[3].split("-"))
            specs = specs[k0:k1]
        cases = default_family.ensure_phantoms(Path(phantoms or "/tmp/vbmd-judge-phantoms"), specs)
        return [(c["name"], c["image"], c["mask"], c["truth"], None) for c in cases]
    if parts[0] in ("independent4", "independent5"):
        import eval_independent as independent

        family = parts[0]
        cases = independent.ensure_cases(Path(phantoms or f"/tmp/vbmd-{family}-eval"),
                                         independent.family_module(family).evaluation_specs(int(parts[1])),
                                         family)
        return [(c["name"], c["image"], c["mask"], c["truth"], c["spec"].hand) for c in cases]
    raise VbmdError(f"a set is study:FIRST:N, broad:FIRST:N[:K0-K1], independent4:N or independent5:N, got {text!r}")


def at_grid_phases(scan, box: Box, hand: str, model, base: np.ndarray) -> np.ndarray:
    """The mean of ``base`` (the crop's probabilities) and ``model``'s on the crop shifted by half a working
    pixel in y, x and both, each put back on the unshifted crop (a shifted crop flush with the scan's edge is
    cut there, and the mean there is over the runs that cover it)."""
    k = int(round(HALF_WORKING_PIXEL_MM / float(scan.spacing[1])))
    total = base.astype(np.float32)
    count = np.ones(box.shape[1:], dtype=np.float32)
    ny, nx = scan.shape[1], scan.shape[2]
    for dy, dx in ((0, k), (k, 0), (k, k)):
        y0, y1 = max(0, box.y0 + dy), min(ny, box.y1 + dy)
        x0, x1 = max(0, box.x0 + dx), min(nx, box.x1 + dx)
        work = stages.to_working(scan, Box(box.z0, box.z1, y0, y1, x0, x1), hand, model, context=(box.z0, box.z1),
                                 threads=1)
        shifted = stages.from_working(stages.infer(model, work), work, threads=1).astype(np.float32)
        iy0, iy1, ix0, ix1 = max(y0, box.y0), min(y1, box.y1), max(x0, box.x0), min(x1, box.x1)
        inside = (slice(iy0 - box.y0, iy1 - box.y0), slice(ix0 - box.x0, ix1 - box.x0))
        total[:, inside[0], inside[1]] += shifted[:, iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0]
        count[inside] += 1
    return np.clip(np.rint(total / count), 0, 255).astype(np.uint8)


def cache(args) -> int:
    from napari_vbmd.segmentation.models import load_model
    from napari_vbmd.segmentation.pipeline import segment

    out = Path(args.cache_dir)
    out.mkdir(parents=True, exist_ok=True)
    models = {}
    for item in args.model:
        label, _, path = item.partition("=")
        if not path or not label.isidentifier():
            raise VbmdError(f"--model takes LABEL=CHECKPOINT (LABEL a plain name), got {item!r}")
        loaded = load_model(path, device="cpu")
        models[label] = dataclasses.replace(loaded, config=dataclasses.replace(loaded.config, threshold=0.1))
    for name, image_path, _, truth_path, hand in cases_for(args.set, args.phantoms):
        target = out / f"{name}.npz"
        if target.exists():
            continue
        t = time.perf_counter()
        image = read_scan(image_path)
        meta = {"hand": hand, "d100_truth": float(json.loads(Path(truth_path).read_text())["d100_mg_ha_cm3"]),
                "failures": {}}
        arrays = {}
        for label, model in models.items():
            try:
                result = segment(image, model=model, hand=hand, threads=1, keep_probability=True, boundary_band_mm=0.0)
            except VbmdError as exc:
                meta["failures"][label] = str(exc).splitlines()[0]
                continue
            meta["box"] = [[s.start, s.stop] for s in result.box.slices]
            arrays[label] = result.probability
            if args.grid_phases:
                hand_used = result.mask.header["segmentation"]["hand"]
                arrays[f"{label}@phases"] = at_grid_phases(image, result.box, hand_used, model, result.probability)
        with atomic_path(target) as tmp:
            with open(tmp, "wb") as f:
                np.savez_compressed(f, meta=json.dumps(meta), **arrays)
        print(f"{name} {time.perf_counter() - t:.1f} s {meta['failures'] or ''}", file=sys.stderr, flush=True)
    return 0


def probabilities(kept: dict, label: str) -> np.ndarray | None:
    if label in kept:
        return kept[label]
    if "+" in label:
        a, b = (probabilities(kept, part) for part in label.split("+", 1))
        if a is None or b is None:
            return None
        return ((a.astype(np.uint16) + b + 1) // 2).astype(np.uint8)
    return None


def score(args) -> int:
    settings = []
    for item in args.settings:
        label, threshold, band = item.rsplit(":", 2)
        settings.append((label, float(threshold), float(band)))
    rows = []
    for name, image_path, mask_path, _, _ in cases_for(args.set, args.phantoms):
        with np.load(Path(args.cache_dir) / f"{name}.npz") as stored:
            meta = json.loads(str(stored["meta"]))
            kept = {key: stored[key] for key in stored.files if key != "meta"}
        image = read_scan(image_path)
        truth = read_mask(mask_path, like=image).data.astype(bool)
        box = Box(*(v for pair in meta["box"] for v in pair)) if "box" in meta else None  # none: every model refused
        density = density_block(image, box.slices) if box is not None else None
        for label, threshold, band in settings:
            row = {"case": name, "model": label, "threshold": threshold, "band": band}
            probability = probabilities(kept, label)
            if probability is None:
                why = "; ".join(meta["failures"].values()) or "not cached"
                row.update(dice=0.0, d100_error_pct=float("nan"), failure=why)
            else:
                dice, d100 = mask_scores(probability, image, box, density, truth, threshold, band)
                error = 100.0 * (d100 - meta["d100_truth"]) / meta["d100_truth"]
                row.update(dice=dice, d100_error_pct=error, failure="")
            rows.append(row)
        line = " ".join(f"{r['model']} {r['threshold']:g}/{r['band']:g}: Dice {r['dice']:.4f} "
                        f"{r['d100_error_pct']:+.2f}%" for r in rows[-len(settings):])
        print(name, line, file=sys.stderr, flush=True)
    with atomic_path(Path(args.out)) as tmp:
        with open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    for label, threshold, band in settings:
        mine = [r for r in rows if (r["model"], r["threshold"], r["band"]) == (label, threshold, band)]
        dices = np.array([r["dice"] for r in mine])
        errors = np.array([r["d100_error_pct"] for r in mine])
        within = int(((dices >= LINE_DICE) & (np.abs(errors) <= LINE_ERROR_PCT)).sum())
        finite = errors[np.isfinite(errors)]
        d100 = (f"|D100 error| mean {np.abs(finite).mean():.2f} %, mean {finite.mean():+.2f} %" if finite.size
                else "no D100 (every case a miss)")
        print(f"{label} {threshold:g}/{band:g} mm: {within}/{len(mine)} within both lines, "
              f"Dice mean {dices.mean():.4f}, {d100}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    c = sub.add_parser("cache", help="keep each model's probabilities per case")
    c.add_argument("set")
    c.add_argument("cache_dir")
    c.add_argument("--model", action="append", required=True, help="LABEL=CHECKPOINT (default: the bundled model)")
    c.add_argument("--grid-phases", action="store_true", help="also keep LABEL@phases (four phases of the grid)")
    c.add_argument("--phantoms", help="where the set's phantoms are (written there once)")
    s = sub.add_parser("score", help="finish the kept probabilities at settings and score them")
    s.add_argument("set")
    s.add_argument("cache_dir")
    s.add_argument("out", help="CSV, one row per case and setting")
    s.add_argument("settings", nargs="+", help="LABEL:THRESHOLD:BAND (LABEL, A+B or A@phases)")
    s.add_argument("--phantoms")
    args = parser.parse_args(argv)
    try:
        return cache(args) if args.command == "cache" else score(args)
    except VbmdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
