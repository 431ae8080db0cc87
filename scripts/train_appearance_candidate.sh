#!/usr/bin/env bash
# Candidate D for the default model: scripts/train_default_model.sh's recipe exactly, with one change,
# `--appearance broad` (blur, fine-texture, bone-contrast, bias-field and correlated-noise changes added to the
# standard augmentation; docs/default-model.md, "Appearance augmentation").
#
#   bash scripts/train_appearance_candidate.sh [WORK_DIR]      (default WORK_DIR: /tmp/vbmd-appearance-candidate)
#   APPEARANCE=broad-half bash scripts/train_appearance_candidate.sh WORK_DIR     (candidate E: the changes on half
#                                                                                 the samples; default APPEARANCE=broad)
#
# 1. the shipped model's 80 training phantoms (scripts/default_model_phantoms.py, seeds 1000..1079);
# 2. seeds 0 and 1 on split seed 0 (56 train, 16 validation, 8 test), in parallel with one thread each;
# 3. `vbmd ensemble --calibrate` (threshold and boundary band on the 16 validation phantoms) into
#    WORK_DIR/default.{json,safetensors}. Not installed: docs/default-model.md says how it compared.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/vbmd-appearance-candidate}"
python="${PYTHON:-python}"
appearance="${APPEARANCE:-broad}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
mkdir -p "$work/data"
nice -n 10 "$python" "$here/scripts/default_model_phantoms.py" "$work/data"
pids=()
for seed in 0 1; do
    nice -n 10 "$python" -m napari_vbmd.cli train "$work/data/pairs.csv" -o "$work/run$seed" \
        --architecture unet2d_small --kwargs '{"base": 8, "depth": 5, "norm": "instance"}' --loss dice_bce \
        --spacing-mm 0.3 --patch 96,256 --batch-size 4 --lr 1e-3 \
        --context-mm -4 -2 0 2 4 --epochs 40 --steps-per-epoch 50 --grad-clip 1.0 \
        --seed "$seed" --split-seed 0 --name default --threads 1 --appearance "$appearance" ${RESUME:+--resume} \
        > "$work/run$seed.log" 2>&1 &
    pids+=($!)
done
for pid in "${pids[@]}"; do wait "$pid"; done   # a failed run stops the script here (set -e)
nice -n 10 "$python" -m napari_vbmd.cli ensemble "$work/run0" "$work/run1" -o "$work/default" --name default \
    --calibrate --threads 2
echo "candidate (appearance $appearance): $work/default.{json,safetensors}"
