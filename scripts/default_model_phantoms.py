"""Step 1 of scripts/train_default_model.sh: the default model's 80 training phantoms and their pairs.csv.

    python scripts/default_model_phantoms.py OUT_DIR

Seeds 1000..1047 a cohort (both hands, 110 slices and twelve of 320, cropped and 8 whole fields of view,
0.082 and 0.123 mm voxels, motion grades 0-3, 0-3 erosions, XtremeCT I and II), seeds 1048..1079 eroded
heads. Phantoms already in OUT_DIR from the same spec are kept. Also used by scripts/train_mixed_candidate.sh.

The eight whole fields are drawn without the thumb and the palmar arch (``PhantomSpec(thumb=False)``), as the
generator drew them when the shipped networks were trained (2026-11-25; generator 3 added the thumb on
2026-11-30): with them the training split's normalisation statistics are the shipped model's to the last digit
(mean 52.06028366088867, std 219.77230834960938), and with the thumb they are not (24.35 / 233.25).
"""
import csv, sys
from pathlib import Path
from napari_vbmd.phantom import PhantomSpec, generate_phantom, phantom_is_cached, phantom_paths, write_phantom

out = Path(sys.argv[1])
rows = []
def spec_of(k: int) -> PhantomSpec:
    if k < 48:  # a cohort: every combination of motion grade and 0-3 erosions, both scanners and voxel sizes
        full = k in (2, 5, 10, 13, 18, 21, 26, 29)  # wide fields of view: 1536 x 1536 at 0.082 mm, 1024 x 1024 at 0.123 mm
        return PhantomSpec(
            seed=1000 + k,
            hand="left" if k % 2 else "right",
            fov="full" if full else "cropped",
            n_slices=320 if k >= 36 else 110,  # the last twelve reach 26 mm up the shaft, as a 3-stack scan does
            spacing_mm=0.123 if k % 3 == 1 else 0.082,
            motion_grade=k % 4,
            erosions=(k // 4) % 4,
            scanner="xtremect2" if k % 5 in (1, 3) else "xtremect1",
            thumb=not full,  # whole fields as generator 2 drew them (no thumb): what the shipped networks saw
        )
    j = k - 48  # then 32 eroded heads (1-3 erosions each), half of them 320 slices long
    return PhantomSpec(
        seed=1000 + k,
        hand="left" if j % 2 else "right",
        fov="cropped",
        n_slices=320 if j % 8 in (0, 3, 5, 6) else 110,
        spacing_mm=0.123 if j % 3 == 1 else 0.082,
        motion_grade=j % 4,
        erosions=j % 3 + 1,
        scanner="xtremect2" if j % 5 in (0, 3) else "xtremect1",
    )


for k in range(80):
    spec = spec_of(k)
    seed = spec.seed
    name = f"train_{seed}"
    paths = phantom_paths(out, name)
    if not phantom_is_cached(out, name, spec):
        write_phantom(generate_phantom(spec), out, name, overwrite=True)
    print(name, spec, flush=True)
    rows.append({"image": paths["image"].name, "mask": paths["mask"].name, "patient": f"phantom-{seed}"})
with open(out / "pairs.csv", "w", newline="") as fh:
    writer = csv.DictWriter(fh, fieldnames=["image", "mask", "patient"])
    writer.writeheader()
    writer.writerows(rows)
