#!/usr/bin/env bash
# Reproduce the bundled default model (src/napari_vbmd/models/default.*) on a CPU.
#
#   bash scripts/train_default_model.sh [WORK_DIR]      (default WORK_DIR: /tmp/vbmd-default-model)
#
# 1. writes 80 varied phantoms (napari_vbmd.phantom) to WORK_DIR/data with pairs.csv
#    (image, mask, patient): seeds 1000..1047 a cohort (both hands, 110 slices and twelve of 320, cropped and 8
#    whole fields of view, native 0.082 mm and coarser 0.123 mm voxels, motion grades 0-3, 0-3 erosions,
#    XtremeCT I and II), seeds 1048..1079 eroded heads (1-3 erosions each, cropped, half of them 320 slices);
# 2. trains twice with `vbmd train`, seeds 0 and 1 on one patient split (--split-seed 0: 56 train, 16
#    validation, 8 test phantoms): small 2D U-Net with instance norm, 0.3 mm working grid, five input channels
#    (the slice and the slices 2 and 4 mm either side of it, so the network can tell the proximal phalanx's base
#    from MC2's shaft), Dice + BCE loss, Adam lr 1e-3 with the gradient norm clipped at 1, batch 4, whole-width
#    96 x 256 patches so the network always sees which bone is the second; 40 epochs of 50 batches, the best
#    validation epoch kept;
# 3. joins the two runs with `vbmd ensemble` (mean probability) and chooses the probability threshold and the
#    boundary refinement band on the validation phantoms (--calibrate);
# 4. copies WORK_DIR/default.{json,safetensors} to src/napari_vbmd/models/default.* and exports default.onnx.
#
# Phantoms never used here (evaluation): seeds 5000.. in benchmarks/eval_default_model.py.
# Environment: THREADS (default 2), PYTHON (default: python on PATH).
#
# The shipped weights come from this recipe on 2 CPU cores (no GPU): about 25 min of phantoms, then per run
# about 6 min of preparing the phantoms and 40 epochs of about 20 s (14 min); the validation Dice was best at
# epoch 24 for seed 0 (0.973) and epoch 28 for seed 1 (0.972); calibration 5 min. The seed-0 run was made on
# 2026-11-24, the seed-1 run and the ensemble on 2026-11-25; step 2's seed-0 command rerun on 2026-11-25 gave
# the same metrics epoch by epoch and every tensor of the shipped first member bit for bit. Every epoch's
# randomness derives from its number and the seed, so a rerun gave the same weights on the same CPU and thread
# count (float rounding may differ elsewhere). That held for the code and environment of 2026-11-25 and no
# longer does: with today's code the seed-0 and seed-1 runs are other networks (candidate R: 86 of 168
# development phantoms within issue 20's lines against the shipped model's 118), and the code of 2026-11-25 in
# today's environment (other library versions) gives another seed-0 run too. The data are the shipped model's
# (docs/default-model.md, "Reproducing the shipped weights" and "Candidate R"). Each run now records its
# environment in its checkpoint (training.environment).
# Without the gradient clip, Adam at lr 1e-3 threw a converged run off at epoch 41 (docs/default-model.md); the
# run stops at 40 epochs. No flips: every hand is turned into a right hand before the network sees it, and a
# mirror flip would teach it that MC2 may sit where MC3 is (the first default model, trained with flips,
# marked MC3 on 2 of 21 unseen phantoms).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-/tmp/vbmd-default-model}"
threads="${THREADS:-2}"
python="${PYTHON:-python}"
export OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads"
mkdir -p "$work/data"

nice -n 10 "$python" "$here/scripts/default_model_phantoms.py" "$work/data"

# 2. two runs of one recipe, seeds 0 and 1, validated on the same phantoms (--split-seed 0)
for seed in 0 1; do
    nice -n 10 "$python" -m napari_vbmd.cli train "$work/data/pairs.csv" -o "$work/run$seed" \
        --architecture unet2d_small --kwargs '{"base": 8, "depth": 5, "norm": "instance"}' --loss dice_bce \
        --spacing-mm 0.3 --patch 96,256 --batch-size 4 --lr 1e-3 \
        --context-mm -4 -2 0 2 4 --epochs 40 --steps-per-epoch 50 --grad-clip 1.0 \
        --seed "$seed" --split-seed 0 --name default --threads "$threads" ${RESUME:+--resume}
done

# 3. joined into one network answering with the two runs' mean probability; the probability threshold and
#    the boundary refinement band (0 = the network's own boundary) are chosen together on the 16 validation
#    phantoms (never on the held-out ones) for vBMD: smallest mean |D100 error| among settings whose mean
#    Dice is within 0.01 of the best (see napari_vbmd.segmentation.calibrate); written only when done
nice -n 10 "$python" -m napari_vbmd.cli ensemble "$work/run0" "$work/run1" -o "$work/default" --name default \
    --calibrate --threads "$threads"

# 4. into the package
cp "$work/default.safetensors" "$here/src/napari_vbmd/models/default.safetensors"
cp "$work/default.json" "$here/src/napari_vbmd/models/default.json"
# 5. its ONNX export (what runs it on the CPU; checked against torch before it is kept; needs `onnx`)
"$python" -m napari_vbmd.segmentation.onnx_export "$here/src/napari_vbmd/models/default.json"
echo "default model: $here/src/napari_vbmd/models/default.{json,safetensors,onnx}"
