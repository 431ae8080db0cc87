"""The fixed sets of independent cases: the evaluation set and the repeat-scan (precision) set."""
from __future__ import annotations

from .cases import IndependentSpec, Pose

EVALUATION_FIRST_SEED = 70_000
PRECISION_FIRST_SEED = 80_000


def evaluation_specs(n: int = 48, first_seed: int = EVALUATION_FIRST_SEED) -> list[IndependentSpec]:
    """Both hands, crops and whole-hand fields, 0.082 mm (XtremeCT) and 0.061 mm (XtremeCT II) voxels, a few
    XtremeCT II scans reconstructed at 0.082 mm, motion 0-3, erosions 0-3, some longer scans.

    Every third case is a whole-hand field; hands alternate; motion cycles 0-3 and erosions 0-3 on
    different periods so that every combination of the two occurs.
    """
    specs = []
    for k in range(n):
        fine = k % 5 in (1, 3)
        scanner = "xtremect2" if fine or k % 7 == 6 else "xtremect1"
        whole = k % 3 == 2
        # one acquisition stack: 110 slices at 0.082 mm (9.0 mm), 168 at 0.061 mm (10.2 mm); some
        # cropped XtremeCT scans are two stacks long (220 slices)
        slices = 168 if fine else (220 if not whole and k % 8 == 3 else 110)
        specs.append(IndependentSpec(
            seed=first_seed + k,
            hand="left" if k % 2 else "right",
            field="whole" if whole else "crop",
            voxel_mm=0.061 if fine else 0.082,
            scanner=scanner,
            n_slices=slices,
            motion_grade=k % 4,
            erosions=(k // 4) % 4,
        ))
    return specs


def precision_specs(n_anatomies: int = 20, repeats: int = 3, first_seed: int = PRECISION_FIRST_SEED
                    ) -> list[list[IndependentSpec]]:
    """Each anatomy (a cropped field, as clinical repeat scans are) scanned ``repeats`` times, each time
    repositioned (Pose.draw), with fresh noise and motion grade 0-2."""
    groups = []
    for a in range(n_anatomies):
        seed = first_seed + a
        fine = a % 4 == 1  # 5 of 20 at 0.061 mm (the finer cases cost 2.5 times as much to make)
        group = []
        for r in range(repeats):
            pose_seed = seed * 10 + r
            group.append(IndependentSpec(
                seed=seed, hand="left" if a % 2 else "right", field="crop",
                voxel_mm=0.061 if fine else 0.082, scanner="xtremect2" if fine else "xtremect1",
                n_slices=168 if fine else 110, motion_grade=(a + r) % 3, erosions=a % 3 if a % 4 == 3 else 0,
                pose=Pose.draw(pose_seed),
            ))
        groups.append(group)
    return groups
