"""The broad variation of the training generator (phantom_broad.py): reproducible, within its documented
ranges, distinct from the study variation, which it leaves unchanged."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest

from napari_vbmd import phantom_broad
from napari_vbmd.errors import VbmdError
from napari_vbmd.phantom import PhantomSpec, _draw_anatomy, _streams, generate_phantom, phantom_is_cached, write_phantom

SMALL = dict(seed=11, spacing_mm=0.164, n_slices=40, motion_grade=1, erosions=1)


def _digest(phantom) -> str:
    return hashlib.sha256(phantom.image.data.tobytes() + phantom.truth.data.tobytes()).hexdigest()


def _anatomy(spec):
    rngs = _streams(spec.seed)
    return _draw_anatomy(spec, rngs["anatomy"], rngs["density"], rngs["scanner"], rngs["erosion"], rngs["hand"],
                         rngs["broad"])


def test_broad_is_reproducible_and_differs_from_study():
    broad = PhantomSpec(**SMALL, variation="broad")
    first, second = generate_phantom(broad), generate_phantom(broad)
    assert _digest(first) == _digest(second)
    study = generate_phantom(PhantomSpec(**SMALL))
    assert _digest(study) != _digest(first)
    assert first.truth_info["spec"]["variation"] == "broad"
    assert "variation" not in study.truth_info["spec"]  # study specs keep the dict they always had
    assert first.truth_info["design"]["broad"]["broad_version"] == phantom_broad.BROAD_VERSION
    assert "broad" not in study.truth_info["design"]


def test_broad_draws_stay_in_their_ranges_and_span_them():
    heads, shafts, psfs, noises, kinds, gaps = [], [], [], [], set(), []
    for seed in range(60):
        a = _anatomy(PhantomSpec(seed=seed, variation="broad").validated())
        mc2 = a.bones[0]
        heads.append(mc2.cortex_head)
        shafts.append(mc2.cortex_shaft)
        psfs.append(a.psf_sigma_mm)
        noises.append(a.noise_mg)
        kinds.add(a.texture_kind)
        gaps.append(a.bones[1].cx - mc2.cx - mc2.a_head - a.bones[1].a_head)
    lo, hi = phantom_broad.CORTEX_HEAD_MM
    assert lo <= min(heads) < 0.25 and 0.55 < max(heads) <= hi
    lo, hi = phantom_broad.CORTEX_SHAFT_MM
    assert lo <= min(shafts) and max(shafts) <= hi
    lo, hi = phantom_broad.PSF_SIGMA_MM
    assert lo <= min(psfs) < 0.085 and 0.14 < max(psfs) <= hi  # wider than the study's 0.085-0.12
    lo, hi = phantom_broad.NOISE_SD_MG
    assert lo <= min(noises) < 40 and 100 < max(noises) <= hi
    assert kinds == {"plate", "rod"}
    assert min(gaps) < 0.6  # MC3 closer than the study ever puts it


def test_variation_is_checked():
    with pytest.raises(VbmdError, match="variation must be one of study, broad"):
        PhantomSpec(variation="wide").validated()


def test_cache_of_a_broad_phantom_is_checked_by_its_version(tmp_path):
    spec = PhantomSpec(seed=3, spacing_mm=0.2, n_slices=30, variation="broad")
    write_phantom(generate_phantom(spec), tmp_path, "case")
    assert phantom_is_cached(tmp_path, "case", spec)
    assert not phantom_is_cached(tmp_path, "case", PhantomSpec(seed=3, spacing_mm=0.2, n_slices=30))
    truth = tmp_path / "case_truth.json"
    info = json.loads(truth.read_text())
    info["design"]["broad"]["broad_version"] = phantom_broad.BROAD_VERSION - 1
    truth.write_text(json.dumps(info))
    assert not phantom_is_cached(tmp_path, "case", spec)


def test_broad_phantom_truth_matches_its_image():
    p = generate_phantom(PhantomSpec(seed=5, spacing_mm=0.164, n_slices=40, variation="broad"))
    inside = p.truth.data.astype(bool)
    assert inside.any()
    d100 = float(p.image.density()[inside].mean())
    assert d100 == pytest.approx(p.truth_info["d100_mg_ha_cm3"], rel=1e-6)
    assert np.isfinite(p.truth_info["design"]["psf_sigma_mm"])
