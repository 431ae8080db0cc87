"""What phantom to make (``PhantomSpec``), what comes out (``Phantom``), and the constants both share:
the generator's version, the field of view, the scanners' calibrations and noise. See phantom.py.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from .errors import VbmdError
from .scan import Calibration, Scan

GENERATOR_NAME = "napari-vbmd phantom"
GENERATOR_VERSION = 3  # 2: noise correlated like a real XtremeCT scan's; 3: whole-hand fields gain the thumb
#: cropped fields are the same voxels since this version (the thumb never reaches them): caches of them stay valid
CROPPED_UNCHANGED_SINCE = 2

NATIVE_SPACING_MM = 0.082
FULL_FOV_VOXELS = 1536
FULL_FOV_MM = FULL_FOV_VOXELS * NATIVE_SPACING_MM  # 125.952 mm, the XtremeCT field of view
CROPPED_FOV_MM = (32.0, 40.0)  # (y, x): MC2 and MC3 heads with their soft tissue
MAX_SLICES = 320
DEFAULT_SLICES = 110

#: Density calibrations of the two HR-pQCT generations, as their AIM processing logs state them.
SCANNER_CALIBRATIONS = {
    "xtremect1": Calibration(density_slope=1441.13599, density_intercept=-356.445007, mu_scaling=8192.0, mu_water=0.2464),
    "xtremect2": Calibration(density_slope=1632.71997, density_intercept=-396.135986, mu_scaling=8192.0, mu_water=0.2402),
}
SCANNER_NAMES = {"xtremect1": "XtremeCT", "xtremect2": "XtremeCT II"}
#: Noise SD at 82 um, mg HA/cm3 (range drawn per phantom); the second generation is quieter.
SCANNER_NOISE_MG = {"xtremect1": (40.0, 52.0), "xtremect2": (30.0, 40.0)}

VARIATIONS = ("study", "broad")

Progress = Callable[[int, int, str], None]


@dataclass
class PhantomSpec:
    """What phantom to make. Anatomy depends on ``seed`` only (not on hand, field or voxel size)."""

    seed: int = 0
    hand: str = "right"  # "left" or "right"
    fov: str = "cropped"  # "cropped" (MC2 + MC3 region) or "full" (1536 x 1536 at 82 um)
    n_slices: int = DEFAULT_SLICES
    spacing_mm: float = NATIVE_SPACING_MM  # isotropic voxel size
    motion_grade: int = 0  # 0 none, 1-3 increasing streaks, ghosting and blur
    erosions: int = 0  # cortical erosions on MC2
    d100_target: float | None = None  # None: drawn like the study's patients
    scanner: str = "xtremect1"  # "xtremect1" or "xtremect2"
    hand_in_header: bool = True  # False: the image says nothing of its hand (like a scanner's file)
    # A repeat scan of the same anatomy (off: None): the hand repositioned in-plane (rotation +-8 deg,
    # shift +-2 mm, drawn from this seed), fresh noise and motion. See phantom_pose.py.
    pose_seed: int | None = None
    # "study": the ranges of the study's simulated scanner and hands; "broad": domain randomisation for
    # training (phantom_broad.py: thinner and thicker cortices, wider blur and noise, other textures, ...)
    variation: str = "study"
    # False: a whole-hand field as generator 2 drew it, without the thumb and the palmar arch (the bundled
    # default model's eight whole-field training phantoms, scripts/default_model_phantoms.py); crops are the same
    thumb: bool = True

    def validated(self) -> "PhantomSpec":
        def bad(message):
            raise VbmdError(f"phantom: {message}")

        if isinstance(self.seed, bool) or not isinstance(self.seed, (int, np.integer)) or self.seed < 0:
            bad(f"seed must be a non-negative integer, got {self.seed!r}")
        if self.hand not in ("left", "right"):
            bad(f"hand must be 'left' or 'right', got {self.hand!r}")
        if self.fov not in ("cropped", "full"):
            bad(f"field of view must be 'cropped' or 'full', got {self.fov!r}")
        if isinstance(self.n_slices, bool) or not isinstance(self.n_slices, (int, np.integer)):
            bad(f"number of slices must be an integer, got {self.n_slices!r}")
        if not 4 <= self.n_slices <= MAX_SLICES:
            bad(f"number of slices must be between 4 and {MAX_SLICES}, got {self.n_slices}")
        try:
            spacing = float(self.spacing_mm)
        except (TypeError, ValueError):
            bad(f"spacing must be a number of millimetres, got {self.spacing_mm!r}")
        if not (math.isfinite(spacing) and 0.04 <= spacing <= 0.5):
            bad(f"spacing must be between 0.04 and 0.5 mm, got {self.spacing_mm!r}")
        if isinstance(self.motion_grade, bool) or self.motion_grade not in (0, 1, 2, 3):
            bad(f"motion grade must be 0, 1, 2 or 3, got {self.motion_grade!r}")
        if isinstance(self.erosions, bool) or not isinstance(self.erosions, (int, np.integer)) or not 0 <= self.erosions <= 6:
            bad(f"number of erosions must be between 0 and 6, got {self.erosions!r}")
        if self.d100_target is not None:
            try:
                target = float(self.d100_target)
            except (TypeError, ValueError):
                bad(f"D100 target must be a number, got {self.d100_target!r}")
            if not (math.isfinite(target) and 80.0 <= target <= 500.0):
                bad(f"D100 target must be between 80 and 500 mg HA/cm3, got {self.d100_target!r}")
        if self.scanner not in SCANNER_CALIBRATIONS:
            bad(f"scanner must be one of {', '.join(SCANNER_CALIBRATIONS)}, got {self.scanner!r}")
        if not isinstance(self.hand_in_header, (bool, np.bool_)):
            bad(f"hand_in_header must be true or false, got {self.hand_in_header!r}")
        if self.pose_seed is not None and (isinstance(self.pose_seed, bool) or not isinstance(self.pose_seed, (int, np.integer))
                                           or self.pose_seed < 0):
            bad(f"pose seed must be a non-negative integer, got {self.pose_seed!r}")
        if self.variation not in VARIATIONS:
            bad(f"variation must be one of {', '.join(VARIATIONS)}, got {self.variation!r}")
        if not isinstance(self.thumb, (bool, np.bool_)):
            bad(f"thumb must be true or false, got {self.thumb!r}")
        return dataclasses.replace(
            self,
            seed=int(self.seed),
            n_slices=int(self.n_slices),
            spacing_mm=spacing,
            motion_grade=int(self.motion_grade),
            erosions=int(self.erosions),
            d100_target=None if self.d100_target is None else float(self.d100_target),
            hand_in_header=bool(self.hand_in_header),
            pose_seed=None if self.pose_seed is None else int(self.pose_seed),
            thumb=bool(self.thumb),
        )

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        if out["hand_in_header"]:  # the default is left out, so specs (and caches) from before it match
            del out["hand_in_header"]
        if out["pose_seed"] is None:  # unposed phantoms keep the spec they always had
            del out["pose_seed"]
        if out["thumb"]:
            del out["thumb"]
        if out["variation"] == "study":  # study phantoms keep the spec they always had
            del out["variation"]
        return out


@dataclass
class Phantom:
    image: Scan  # int16 native, calibrated
    truth: Scan  # uint8 0/1 mask of MC2, same grid
    truth_info: dict
    spec: PhantomSpec
