"""Step 1 of scripts/train_broad_candidate.sh: the default model's training phantoms (broad variation).

    python scripts/train_broad_candidate_data.py OUT_DIR [SHARD N_SHARDS]

Writes phantoms ``train_<seed>`` (seeds 20000..20071, never used for evaluation) to OUT_DIR, skipping those
already there from the same spec, and, when run without a shard (or as shard 0 after the others), OUT_DIR/pairs.csv.
Shards split the cases (k + k // 4) % N_SHARDS == SHARD, so that two processes share the costly cases (0.061 mm,
320 slices, whole hands) and use two cores.
"""
from __future__ import annotations

import csv
import sys
import time
from pathlib import Path

from napari_vbmd.phantom import PhantomSpec, generate_phantom, phantom_is_cached, phantom_paths, write_phantom

N_CASES = 72
FIRST_SEED = 20000
#: whole-hand fields (1536 x 1536 at 0.082 mm, 110 slices): every 24th case (the network sees a box around MC2
#: either way; the whole field costs generation time)
FULL = {k for k in range(N_CASES) if k % 24 == 4}


def spec_of(k: int) -> PhantomSpec:
    """Case k: a quarter at 0.061 mm (XtremeCT II's voxel, 168 slices = 10 mm), the rest at 0.082 mm (110
    slices; every sixth 320 slices = 26 mm up the shaft, as a 3-stack scan), both hands, motion 0-3, 0-3
    erosions, both calibrations, three whole-hand fields; all of the broad variation."""
    fine = k % 4 == 1
    return PhantomSpec(
        seed=FIRST_SEED + k,
        hand="left" if k % 2 else "right",
        fov="full" if k in FULL else "cropped",
        n_slices=168 if fine else (320 if k % 6 == 5 and k not in FULL else 110),
        spacing_mm=0.061 if fine else 0.082,
        motion_grade=(k // 2) % 4,
        erosions=(k // 8) % 4,
        scanner="xtremect1" if k % 3 == 0 else "xtremect2",
        variation="broad",
    )


def main(argv: list[str]) -> int:
    out = Path(argv[0])
    shard, n_shards = (int(argv[1]), int(argv[2])) if len(argv) > 2 else (0, 1)
    for k in range(N_CASES):
        if (k + k // 4) % n_shards != shard:
            continue
        spec = spec_of(k)
        name = f"train_{spec.seed}"
        if not phantom_is_cached(out, name, spec):
            started = time.perf_counter()
            write_phantom(generate_phantom(spec), out, name, overwrite=True)
            print(f"{name}: {time.perf_counter() - started:.0f} s {spec}", flush=True)
    if n_shards == 1 or shard == 0:
        rows = []
        for k in range(N_CASES):
            spec = spec_of(k)
            paths = phantom_paths(out, f"train_{spec.seed}")
            if not all(p.is_file() for p in paths.values()):
                continue  # another shard still writing: the last run without a shard writes the full list
            rows.append({"image": paths["image"].name, "mask": paths["mask"].name, "patient": f"phantom-{spec.seed}"})
        with open(out / "pairs.csv", "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=["image", "mask", "patient"])
            writer.writeheader()
            writer.writerows(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
