"""An independent family of synthetic MCP-joint HR-pQCT scans, for validation only.

Written separately from ``napari_vbmd.phantom`` (the generator the bundled model was trained on):
no shared anatomy, texture, blur, noise or motion code, and it never imports that module. It lives
outside the shipped package so that no training code can pick it up. Never train or tune on it;
evaluate each shipped model on it once (benchmarks/eval_independent.py). See
docs/independent-phantoms.md.
"""
from .cases import (
    GENERATOR,
    GENERATOR_VERSION,
    IndependentCase,
    IndependentSpec,
    Pose,
    case_paths,
    generate,
    is_cached,
    write_case,
)
from .cohorts import evaluation_specs, precision_specs

__all__ = [
    "GENERATOR",
    "GENERATOR_VERSION",
    "IndependentCase",
    "IndependentSpec",
    "Pose",
    "case_paths",
    "evaluation_specs",
    "generate",
    "is_cached",
    "precision_specs",
    "write_case",
]
