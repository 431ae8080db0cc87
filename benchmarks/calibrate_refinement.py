"""Choose a model's threshold, boundary band and edge level on phantoms of the training generator.

    python benchmarks/calibrate_refinement.py --model default --set broad:32000:48 --set study:5000:24 \
        [--thresholds 0.3 0.4 0.5] [--bands 0.15 0.25 0.35] [--levels 0.5 0.55 0.6 0.65 0.7] \
        [--rule lines] [--cache /tmp/vbmd-calibrate] [--json OUT.json] [--out-checkpoint DIR/NAME]

Each ``--set VARIATION:FIRST_SEED:N`` is a set of held-out phantoms as benchmarks/eval_default_model.py
makes them (``study``: held_out_specs, ``broad``: broad_held_out_specs), written once to ``--cache``. The
pipeline runs once per case (napari_vbmd.segmentation.calibrate.calibrate_threshold); every setting
re-finishes its probabilities. ``--rule lines`` (the default here) chooses the setting with the most cases
meeting Dice >= 0.97 and |D100 error| <= 1.5 %, ties broken by the smaller mean |D100 error|; ``dice`` is
the rule of ``vbmd ensemble --calibrate``. Prints the table (best first); ``--json`` keeps it with the
per-case figures; ``--out-checkpoint`` writes a copy of the model (config, weights and, where there is one,
its ONNX export) with the chosen setting in its config, after everything ran (the model read is never
written over).

Never give it the independent family's cases: they judge a setting, they do not choose one.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

from napari_vbmd._atomic import atomic_path, write_text_atomic
from napari_vbmd.errors import VbmdError
from napari_vbmd.segmentation.calibrate import RULES, calibrate_threshold, set_checkpoint_threshold
from napari_vbmd.segmentation.datasets import Pair
from napari_vbmd.segmentation.models import resolve

sys.path.insert(0, str(Path(__file__).resolve().parent))
from eval_default_model import broad_held_out_specs, ensure_phantoms, held_out_specs  # noqa: E402

SPECS = {"study": held_out_specs, "broad": broad_held_out_specs}


def parse_set(text: str) -> tuple[str, int, int]:
    parts = text.split(":")
    if len(parts) != 3 or parts[0] not in SPECS:
        raise VbmdError(f"--set must be VARIATION:FIRST_SEED:N with VARIATION one of {', '.join(SPECS)}, got {text!r}")
    try:
        first, n = int(parts[1]), int(parts[2])
    except ValueError:
        raise VbmdError(f"--set {text!r}: the first seed and the number of cases must be whole numbers") from None
    if n < 1:
        raise VbmdError(f"--set {text!r}: at least one case")
    return parts[0], first, n


def pairs_for(sets, cache: Path) -> list[Pair]:
    pairs = []
    for variation, first, n in sets:
        for case in ensure_phantoms(cache, SPECS[variation](n, first)):
            pairs.append(Pair(case=case["name"], image=Path(case["image"]), mask=Path(case["mask"]),
                              patient=case["name"]))
    return pairs


def markdown(result: dict, top: int) -> str:
    rows = sorted(result["table"], key=lambda r: (-r["cases_within_lines"], r["mean_abs_d100_error_pct"]))
    n = len(result["cases"])
    lines = ["| threshold | band (mm) | edge level | both lines met | Dice mean (min) | mean \\|D100 error\\| "
             "| mean (median) D100 error | max \\|error\\| |", "|---|---|---|---|---|---|---|---|"]
    for r in rows[:top]:
        chosen = (r["threshold"], r["boundary_band_mm"], r["edge_level"]) == (
            result["threshold"], result["boundary_band_mm"], result["edge_level"])
        mark = "**" if chosen else ""
        lines.append(f"| {mark}{r['threshold']:g}{mark} | {r['boundary_band_mm']:g} | {r['edge_level']:g} "
                     f"| {r['cases_within_lines']} / {n} | {r['mean_dice']:.4f} ({r['min_dice']:.4f}) "
                     f"| {r['mean_abs_d100_error_pct']:.2f} % | {r['mean_d100_error_pct']:+.2f} % "
                     f"({r['median_d100_error_pct']:+.2f} %) | {r['max_abs_d100_error_pct']:.2f} % |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="default")
    parser.add_argument("--set", dest="sets", action="append", required=True, type=str,
                        help="VARIATION:FIRST_SEED:N (repeatable)")
    parser.add_argument("--thresholds", type=float, nargs="+", default=[0.3, 0.4, 0.5])
    parser.add_argument("--bands", type=float, nargs="+", default=[0.15, 0.25, 0.35])
    parser.add_argument("--levels", type=float, nargs="+", default=[0.5, 0.55, 0.6, 0.65, 0.7])
    parser.add_argument("--rule", choices=RULES, default="lines")
    parser.add_argument("--cache", default="/tmp/vbmd-calibrate")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", help="write the table and the per-case figures here")
    parser.add_argument("--out-checkpoint", help="write a copy of the model with the chosen setting here "
                        "(NAME.json, NAME.safetensors, NAME.onnx)")
    parser.add_argument("--top", type=int, default=15, help="rows of the table to print")
    args = parser.parse_args(argv)
    try:
        sets = [parse_set(s) for s in args.sets]
        source = resolve(args.model)
        if source.classical:
            raise VbmdError("the classical method has no threshold, band or edge level to calibrate")
        if args.out_checkpoint:
            target = Path(args.out_checkpoint).with_suffix(".json")
            if target.resolve() == source.files[0].resolve():
                raise VbmdError("--out-checkpoint would write over the model read; give another path", target)
            if not target.parent.is_dir():
                raise VbmdError("--out-checkpoint: no such folder", target.parent)
        pairs = pairs_for(sets, Path(args.cache))
        t = time.perf_counter()
        result = calibrate_threshold(args.model, pairs, candidates=args.thresholds, bands=args.bands,
                                     levels=args.levels, rule=args.rule, threads=args.threads,
                                     log=lambda line: print(line.split(":")[0], file=sys.stderr, flush=True))
    except VbmdError as exc:
        print(f"calibrate_refinement: error: {exc}", file=sys.stderr)
        return 2
    result["sets"] = [f"{v}:{f}:{n}" for v, f, n in sets]
    result["model"] = str(args.model)
    result["seconds"] = round(time.perf_counter() - t, 1)
    print(markdown(result, args.top))
    print(f"\nchosen ({args.rule}): threshold {result['threshold']:g}, band {result['boundary_band_mm']:g} mm, "
          f"edge level {result['edge_level']:g}; {len(pairs)} cases, {result['seconds']:.0f} s")
    if args.json:
        write_text_atomic(Path(args.json), json.dumps(result, indent=1) + "\n")
    if args.out_checkpoint:
        target = Path(args.out_checkpoint)
        config, weights = source.files
        onnx = config.with_suffix(".onnx")
        for src, suffix in ((weights, weights.suffix), (onnx, ".onnx"), (config, ".json")):
            if src.is_file():
                with atomic_path(target.with_suffix(suffix)) as tmp:
                    shutil.copyfile(src, tmp)
        set_checkpoint_threshold(target.with_suffix(".json"), result)
        print(f"written: {target.with_suffix('.json')} (and its weights)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
