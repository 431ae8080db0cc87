"""`vbmd ensemble CKPT CKPT ... -o OUT`: join networks trained apart into one checkpoint."""
from __future__ import annotations

import json
import sys
from pathlib import Path

from ..errors import VbmdError
from ._common import positive_int
from ._output import print_json, print_table

THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5)
BANDS_MM = (0.0, 0.15, 0.25, 0.35)


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "ensemble",
        help="join checkpoints of one recipe trained with other seeds into one (mean probability)",
        description="Join two or more checkpoints of one recipe (same architecture, data and working grid; "
        "other --seed, the same --split-seed) into one checkpoint whose network answers with their mean "
        "probability. Use it like any checkpoint: --model OUT.json. With --calibrate, the threshold and "
        "boundary band are chosen on the members' shared validation cases (their split.json) for vBMD.",
    )
    p.add_argument("members", nargs="+", help="checkpoints (NAME.json, or the training folders holding best.json)")
    p.add_argument("-o", "--output", required=True, help="the ensemble checkpoint to write (NAME or NAME.json)")
    p.add_argument("--name", help="model name stored in the checkpoint (default: the first member's)")
    p.add_argument("--calibrate", action="store_true",
                   help="choose threshold and boundary band on the validation cases the members share (runs the "
                   "pipeline once per case)")
    p.add_argument("--threads", type=positive_int, help="CPU threads for --calibrate (at least 1)")
    p.add_argument("--json", action="store_true", help="print a JSON summary")
    p.set_defaults(func=run)


def _shared_validation_pairs(members: list[str]):
    """The validation pairs every member's training folder recorded (split.json), which must agree."""
    from ..segmentation.checkpoint import checkpoint_paths, read_config
    from ..segmentation.datasets import find_pairs

    val, data = None, None
    for member in members:
        config_path, _ = checkpoint_paths(member)
        split_path = config_path.parent / "split.json"
        if not split_path.is_file():
            raise VbmdError("--calibrate needs each member's split.json beside its checkpoint", split_path)
        try:
            member_val = json.loads(split_path.read_text(encoding="utf-8"))["val"]
        except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError) as exc:
            raise VbmdError(f"damaged split record ({type(exc).__name__}: {exc})", split_path) from None
        if not isinstance(member_val, list):
            raise VbmdError("damaged split record (val is not a list of cases)", split_path)
        member_data = read_config(config_path).training.get("data")
        if val is None:
            val, data = member_val, member_data
        elif member_val != val or member_data != data:
            raise VbmdError("--calibrate: members were validated on different cases (train them with one "
                            "--split-seed on the same data)", split_path)
    if not data:
        raise VbmdError("--calibrate: the members' checkpoints do not say what data they were trained on")
    pairs = [p for p in find_pairs(data) if p.case in set(val)]
    if not pairs:
        raise VbmdError("--calibrate: none of the validation cases is in the training data any more", data)
    return pairs


def run(args) -> int:
    import shutil
    import tempfile

    from .._atomic import atomic_path, check_not_input, ensure_output_folder
    from ..segmentation.checkpoint import checkpoint_paths, make_ensemble

    output = Path(args.output)
    if output.suffix not in ("", ".json"):
        raise VbmdError("output must be NAME or NAME.json (NAME.safetensors is written beside it)", output)
    config_out, weights_out = output.with_suffix(".json"), output.with_suffix(".safetensors")
    onnx_out = output.with_suffix(".onnx")
    inputs = [path for member in args.members for path in checkpoint_paths(member)]
    ensure_output_folder(config_out.parent)
    for target in (config_out, weights_out, onnx_out):
        check_not_input(target, inputs)
    pairs = _shared_validation_pairs(args.members) if args.calibrate else None
    # built and calibrated aside, then moved into place: an interrupted run leaves no uncalibrated checkpoint
    with tempfile.TemporaryDirectory(dir=config_out.parent, prefix=".vbmd-ensemble-") as work:
        config_path, weights_path = make_ensemble(args.members, Path(work) / "ensemble", name=args.name)
        summary = {"checkpoint": str(config_out), "weights": str(weights_out), "members": len(args.members)}
        if pairs is not None:
            from ..segmentation.calibrate import calibrate_threshold, set_checkpoint_threshold

            log = None if args.json else (lambda line: print(line, file=sys.stderr, flush=True))
            result = calibrate_threshold(config_path, pairs, candidates=THRESHOLDS, bands=BANDS_MM,
                                         threads=args.threads, log=log)
            set_checkpoint_threshold(config_path, result)
            summary.update(threshold=result["threshold"], boundary_band_mm=result["boundary_band_mm"],
                           validation_cases=len(pairs))
        from ..segmentation.onnx_export import export_quietly

        onnx_path, summary["onnx_note"] = export_quietly(config_path)  # what runs it on a CPU
        summary["onnx"] = str(onnx_out) if onnx_path else None
        moves = [(weights_path, weights_out), (config_path, config_out)]
        if onnx_path:
            moves.append((Path(onnx_path), onnx_out))
        for source, target in moves:
            with atomic_path(target) as tmp:
                shutil.copyfile(source, tmp)
    if args.json:
        print_json(summary)
    else:
        print_table(list(summary.items()))
    return 0
