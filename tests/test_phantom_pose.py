"""Repeat scans of a training-generator phantom (PhantomSpec.pose_seed): off by default, leaving
every phantom as it was; on, the same anatomy repositioned with fresh noise."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import scipy

from _numpy_paths import recording_cpu_env
from napari_vbmd.errors import VbmdError
from napari_vbmd.phantom import PhantomSpec, generate_phantom

SMALL = dict(seed=3, n_slices=24, spacing_mm=0.164)

# sha256 of image + truth bytes of PhantomSpec(**SMALL) and of a left hand with motion and erosions,
# made by phantom.py before the pose option existed (NumPy 2.4.6, SciPy 1.17.1).
BEFORE_POSE = {
    "numpy": "2.4.6", "scipy": "1.17.1",
    "cases": [
        (SMALL, "d9987e9a7daddeb8268c67d761771f04e48a870b68aafbc22c9eecba0d0daa5d"),
        (dict(seed=5, n_slices=20, spacing_mm=0.164, hand="left", motion_grade=3, erosions=2),
         "77f35faf454d0f3dd93ca0d97cf75ebf2a889776e6b4660793bf9b0c9274768a"),
    ],
}


def test_pose_off_leaves_the_spec_as_it_was():
    spec = PhantomSpec(**SMALL)
    assert spec.pose_seed is None and "pose_seed" not in spec.to_dict()
    assert PhantomSpec(**SMALL, pose_seed=2).validated().to_dict()["pose_seed"] == 2


def test_pose_off_gives_the_voxels_of_before_byte_for_byte():
    if (np.__version__, scipy.__version__) != (BEFORE_POSE["numpy"], BEFORE_POSE["scipy"]):
        pytest.skip(f"digests recorded with NumPy {BEFORE_POSE['numpy']} / SciPy {BEFORE_POSE['scipy']}; this is "
                    f"{np.__version__} / {scipy.__version__} (their FFTs may differ in the last bit)")
    code = (
        "import hashlib, json, sys\n"
        "from napari_vbmd.phantom import PhantomSpec, generate_phantom\n"
        "out = []\n"
        "for kwargs in json.loads(sys.argv[1]):\n"
        "    p = generate_phantom(PhantomSpec(**kwargs))\n"
        "    out.append([hashlib.sha256(p.image.data.tobytes() + p.truth.data.tobytes()).hexdigest(),\n"
        "                'pose' in p.truth_info['design']])\n"
        "print(json.dumps(out))\n"
    )
    cases = [kwargs for kwargs, _ in BEFORE_POSE["cases"]]
    done = subprocess.run([sys.executable, "-c", code, json.dumps(cases)], env=recording_cpu_env(),
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for (kwargs, digest), (got, has_pose) in zip(BEFORE_POSE["cases"], json.loads(done.stdout)):
        assert got == digest, kwargs
        assert not has_pose


def test_a_repeat_scan_is_the_same_anatomy_moved_with_fresh_noise():
    base = generate_phantom(PhantomSpec(**SMALL))
    again = [generate_phantom(PhantomSpec(**SMALL, pose_seed=k)) for k in (1, 2)]
    for phantom in again:
        pose = phantom.truth_info["design"]["pose"]
        assert abs(pose["rotation_deg"]) <= 8 and max(map(abs, pose["shift_mm_yx"])) <= 2
        assert phantom.image.shape == base.image.shape and phantom.image.origin == base.image.origin  # same field
        assert not np.array_equal(phantom.truth.data, base.truth.data)  # the bone moved
        assert phantom.truth_info["n_voxels"] == pytest.approx(base.truth_info["n_voxels"], rel=0.01)
        assert phantom.truth_info["d100_mg_ha_cm3"] == pytest.approx(base.truth_info["d100_mg_ha_cm3"], rel=0.01)
    assert again[0].truth_info["design"]["pose"] != again[1].truth_info["design"]["pose"]
    # fresh noise: the air far from the hand differs between scans
    a, b = (p.image.data[:, :4, :4].astype(float) for p in again)
    assert not np.array_equal(a, b)
    repeat = generate_phantom(PhantomSpec(**SMALL, pose_seed=1))
    assert np.array_equal(repeat.image.data, again[0].image.data)  # a pose is deterministic


def test_bad_pose_seed_is_refused():
    with pytest.raises(VbmdError, match="pose seed"):
        PhantomSpec(**SMALL, pose_seed=-1).validated()
