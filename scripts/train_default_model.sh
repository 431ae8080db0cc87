#!/usr/bin/env bash
# Reproduce the bundled default model (src/napari_vbmd/models/default.*) on a CPU.
#
#   bash scripts/train_default_model.sh [WORK_DIR]      (default WORK_DIR: /tmp/vbmd-default-model)
#
# 1. writes 34 varied phantoms (napari_vbmd.phantom) to WORK_DIR/data with pairs.csv
#    (image, mask, patient): seeds 1000..1033, both hands, cropped and full field of view, native
#    0.082 mm and coarser 0.123 mm voxels, motion grades 0-3, 0-3 erosions, XtremeCT I and II;
# 2. trains with `vbmd train` (small 2D U-Net, 0.3 mm working grid, Dice loss, Adam lr 1e-3,
#    batch 8, whole-width 96 x 256 patches so the network always sees which bone is the second);
# 3. copies WORK_DIR/run/best.{json,safetensors} to src/napari_vbmd/models/default.*.
#
# Phantoms never used here (evaluation): seeds 5000.. in benchmarks/eval_default_model.py.
# Environment: THREADS (default 2), MAX_MINUTES (default 24), PYTHON (default: python on PATH).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/vbmd-default-model}"
threads="${THREADS:-2}"
max_minutes="${MAX_MINUTES:-24}"
python="${PYTHON:-python}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
mkdir -p "$work/data"

nice -n 10 "$python" - "$work/data" <<'PY'
import csv, sys
from pathlib import Path
from napari_vbmd.phantom import PhantomSpec, generate_phantom, phantom_paths, write_phantom

out = Path(sys.argv[1])
rows = []
for k in range(34):
    seed = 1000 + k
    full = k in (2, 5, 10, 13, 22, 25)  # wide fields of view: 1536 x 1536 at 0.082 mm, 1024 x 1024 at 0.123 mm
    spec = PhantomSpec(
        seed=seed,
        hand="left" if k % 2 else "right",
        fov="full" if full else "cropped",
        n_slices=110,
        spacing_mm=0.123 if k % 3 == 1 else 0.082,
        motion_grade=k % 4,
        erosions=(k // 4) % 4,
        scanner="xtremect2" if k % 5 in (1, 3) else "xtremect1",
    )
    name = f"train_{seed}"
    paths = phantom_paths(out, name)
    if not all(p.exists() for p in paths.values()):
        write_phantom(generate_phantom(spec), out, name, overwrite=True)
    print(name, spec, flush=True)
    rows.append({"image": paths["image"].name, "mask": paths["mask"].name, "patient": f"phantom-{seed}"})
with open(out / "pairs.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=["image", "mask", "patient"])
    writer.writeheader()
    writer.writerows(rows)
PY

nice -n 10 "$python" -m napari_vbmd.cli train "$work/data/pairs.csv" -o "$work/run" \
    --architecture unet2d_small --kwargs '{"base": 8, "depth": 5}' \
    --spacing-mm 0.3 --patch 96,256 --batch-size 8 --lr 1e-3 \
    --epochs 40 --steps-per-epoch 60 --max-minutes "$max_minutes" \
    --seed 0 --name default --threads "$threads" ${RESUME:+--resume}

cp "$work/run/best.safetensors" "$here/src/napari_vbmd/models/default.safetensors"
cp "$work/run/best.json" "$here/src/napari_vbmd/models/default.json"
echo "default model: $here/src/napari_vbmd/models/default.{json,safetensors}"
