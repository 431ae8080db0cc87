"""The broad variation of the training generator (``PhantomSpec(variation="broad")``): domain randomisation.

The study variation draws its parameters from the narrow ranges of one simulated scanner and one kind of
hand. A network trained only on those learnt, for instance, that a head's cortex is 0.30-0.45 mm thick
under a 0.085-0.12 mm blur; on a 0.35 mm cortex blurred more, its mask followed the cortex's inner surface
and left the shell out (issue 20). The broad variation widens every range the issue lists, each drawn from
its own random stream (``"broad"``), after the study's draws of the same quantity, which it replaces: the
study streams are drawn exactly as before, so a study spec gives the same voxels as ever.

Every range and its reason is in docs/phantoms.md ("The broad variation").
"""
from __future__ import annotations

import math

import numpy as np

#: bumped when broad phantoms change (their caches are made again; study phantoms never change with it)
BROAD_VERSION = 1

CORTEX_HEAD_MM = (0.20, 0.60)
CORTEX_SHAFT_MM = (0.60, 2.00)
PSF_SIGMA_MM = (0.07, 0.17)
NOISE_SD_MG = (30.0, 130.0)  # log-uniform
D100_MEAN, D100_SD, D100_RANGE = 279.0, 55.0, (130.0, 420.0)


class Broadening:
    """Draws of the broad variation, in a fixed order from one stream (call the methods in the order
    ``generate_phantom`` does)."""

    def __init__(self, rng: np.random.Generator):
        self.rng = rng

    # --- bones -------------------------------------------------------------------------------------
    def metacarpals(self, metacarpals) -> None:
        """Cortex 0.2-0.6 mm at the head and 0.6-2.0 mm in the shaft; sections flattened, lobed and
        asymmetric (first to fifth outline harmonics up to 5-8 %); flatter or rounder domes."""
        rng = self.rng
        for m in metacarpals:
            m.cortex_head = float(rng.uniform(*CORTEX_HEAD_MM))
            m.cortex_shaft = float(rng.uniform(max(CORTEX_SHAFT_MM[0], m.cortex_head + 0.2), CORTEX_SHAFT_MM[1]))
            depth_ratio = rng.uniform(0.72, 0.98)
            m.b_shaft *= depth_ratio * m.a_head / m.b_head
            m.b_head = m.a_head * depth_ratio
            m.dome_q = float(rng.uniform(1.8, 3.0))
            m.palmar_bulge = float(rng.uniform(0.0, 0.16))
            m.delta = float(rng.uniform(0.03, 0.14))
            m.twist = float(rng.normal(0, 0.25))
            amplitudes = {1: 0.05, 2: 0.08, 3: 0.06, 4: 0.04, 5: 0.03}
            m.harmonics = tuple((k, float(rng.uniform(0.0, a)), float(rng.uniform(0, 2 * math.pi)))
                                for k, a in amplitudes.items())

    def gap_mc2_mc3(self) -> float:
        """MC3 touching MC2 through the blur (0.15-0.8 mm) in 40 %, else 0.8-5 mm."""
        rng = self.rng
        return float(rng.uniform(0.15, 0.8) if rng.random() < 0.4 else rng.uniform(0.8, 5.0))

    def phalanges(self, phalanges) -> None:
        """Joint spaces 0.4-2.0 mm (narrow ones touch through the blur); phalanx cortex 0.2-0.6 mm."""
        for p in phalanges:
            p.gap = float(self.rng.uniform(0.4, 2.0))
            p.cortex = float(self.rng.uniform(0.2, 0.6))

    def d100_target(self) -> float:
        return float(np.clip(self.rng.normal(D100_MEAN, D100_SD), *D100_RANGE))

    def cortical_density(self, z_score: float) -> float:
        return float(np.clip(950.0 + 35.0 * z_score + self.rng.normal(0, 50.0), 800.0, 1150.0))

    # --- the rest of the anatomy, the texture and the scanner ----------------------------------------
    def anatomy(self, anatomy) -> None:
        rng = self.rng
        anatomy.rotation = float(rng.uniform(-0.26, 0.26))  # +-15 degrees in the holder
        anatomy.fat = float(rng.uniform(0.8, 5.0))
        anatomy.hand_power = float(rng.uniform(2.2, 4.0))
        anatomy.soft_tissue = {
            "fat": float(rng.uniform(-60.0, -20.0)), "muscle": float(rng.uniform(5.0, 40.0)),
            "skin": float(rng.uniform(15.0, 45.0)), "tendon": float(rng.uniform(30.0, 60.0)),
            "skin_mm": float(rng.uniform(0.6, 1.5)),
        }
        anatomy.trabecular_wavelength = float(rng.uniform(0.6, 1.4))
        anatomy.texture_bandwidth = float(rng.uniform(0.25, 0.5))
        anatomy.texture_z_stretch = float(rng.uniform(0.8, 2.0))
        anatomy.texture_kind = "rod" if rng.random() < 0.4 else "plate"
        anatomy.tissue_density = float(rng.uniform(850.0, 1050.0))
        anatomy.marrow = float(rng.uniform(-30.0, 60.0))
        anatomy.endosteal_irregularity = float(rng.uniform(0.1, 0.4))
        anatomy.psf_sigma_mm = float(rng.uniform(*PSF_SIGMA_MM))
        anatomy.noise_mg = float(math.exp(rng.uniform(math.log(NOISE_SD_MG[0]), math.log(NOISE_SD_MG[1]))))


def design_info(anatomy) -> dict:
    """What the broad variation drew beyond the study's design record."""
    return {
        "broad_version": BROAD_VERSION,
        "soft_tissue": anatomy.soft_tissue,
        "texture": {"kind": anatomy.texture_kind, "bandwidth": anatomy.texture_bandwidth,
                    "z_stretch": anatomy.texture_z_stretch},
        "endosteal_irregularity": anatomy.endosteal_irregularity,
        "rotation_rad": anatomy.rotation,
        "joint_gaps_mm": [float(b.gap) for b in anatomy.bones if hasattr(b, "gap")],
    }
