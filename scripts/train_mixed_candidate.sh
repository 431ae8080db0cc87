#!/usr/bin/env bash
# A retraining candidate for the default model: the shipped recipe (scripts/train_default_model.sh, step 2)
# from scratch on the 80 training phantoms plus 48 of the broad variation (docs/default-model.md, "Retrained on
# the study and broad phantoms together").
#
#   bash scripts/train_mixed_candidate.sh [WORK_DIR]      (default WORK_DIR: /tmp/vbmd-mixed-candidate)
#   RECIPE=cosine bash scripts/train_mixed_candidate.sh /tmp/vbmd-candidate-c     (candidate C; its own WORK_DIR)
#
# 1. the 80 training phantoms of the shipped model (scripts/default_model_phantoms.py, seeds 1000..1079) and the
#    48 broad phantoms of seeds 30000..30047 (benchmarks/eval_default_model.py --variation broad: both hands,
#    0.061 and 0.082 mm, whole-hand fields, motion 0-3, 0-3 erosions; used before to compare models and to design
#    the joint split, so they are development data, never a held-out set) into WORK_DIR/pairs.csv (128 patients;
#    --split-seed 0: 89 train, 26 validation of which 11 broad, 13 test);
# 2. two runs, seeds 0 and 1, of the shipped recipe (small 2D U-Net, instance norm, 0.3 mm grid, five context
#    slices, Dice + BCE, Adam lr 1e-3, gradient clip 1, batch 4, 96 x 256 patches, 40 epochs of 50 batches), in
#    parallel with one thread each, validated every 8th epoch (--validate-every: validation runs the pipeline on
#    the 26 validation scans, ~90 s on one thread, against ~12 s for an epoch's training);
#    RECIPE=cosine (candidate C): the same with a cosine schedule over 100 epochs (two warm-up epochs), validated
#    every 20th and stopped after epoch 40, the best epoch of both seeds in the runs that went on to epoch 79;
# 3. joined by `vbmd ensemble --calibrate` (mean probability; threshold and boundary band chosen on the 26
#    validation phantoms) into WORK_DIR/default.{json,safetensors}. Not installed: docs/default-model.md says
#    how it compared with the shipped model.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/vbmd-mixed-candidate}"
python="${PYTHON:-python}"
case "${RECIPE:-constant}" in
    constant) schedule=(--epochs 40 --validate-every 8) ;;                                        # candidate B
    cosine) schedule=(--lr-schedule cosine --warmup-epochs 2 --epochs 100 --validate-every 20 --stop-after 40) ;;  # C
    *) echo "RECIPE must be constant or cosine" >&2; exit 2 ;;
esac
mkdir -p "$work/data" "$work/broad"

export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
"$python" "$here/scripts/default_model_phantoms.py" "$work/data" > "$work/phantoms.log" &
phantoms=$!
"$python" "$here/benchmarks/eval_default_model.py" --variation broad --n 48 --first-seed 30000 \
    --cache "$work/broad" --generate-only
wait "$phantoms"
"$python" - "$work" <<'PY'
import csv, sys
from pathlib import Path

work = Path(sys.argv[1])
with open(work / "data" / "pairs.csv", newline="") as fh:
    rows = [{**r, "image": f"data/{r['image']}", "mask": f"data/{r['mask']}"} for r in csv.DictReader(fh)]
for seed in range(30000, 30048):
    rows.append({"image": f"broad/heldout_{seed}.aim", "mask": f"broad/heldout_{seed}_mask.aim",
                 "patient": f"phantom-{seed}"})
with open(work / "pairs.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=["image", "mask", "patient"])
    writer.writeheader()
    writer.writerows(rows)
PY

runs=()
for seed in 0 1; do
    "$python" -m napari_vbmd.cli train "$work/pairs.csv" -o "$work/run$seed" \
        --architecture unet2d_small --kwargs '{"base": 8, "depth": 5, "norm": "instance"}' --loss dice_bce \
        --spacing-mm 0.3 --patch 96,256 --batch-size 4 --lr 1e-3 \
        --context-mm -4 -2 0 2 4 --steps-per-epoch 50 --grad-clip 1.0 "${schedule[@]}" \
        --seed "$seed" --split-seed 0 --name default --threads 1 ${RESUME:+--resume} > "$work/run$seed.log" 2>&1 &
    runs+=("$!")
done
for run in "${runs[@]}"; do wait "$run"; done  # each run's failure stops the script (set -e)
OMP_NUM_THREADS=2 MKL_NUM_THREADS=2 "$python" -m napari_vbmd.cli ensemble "$work/run0" "$work/run1" \
    -o "$work/default" --name default --calibrate --threads 2
echo "checkpoint: $work/default.json (not installed)"
