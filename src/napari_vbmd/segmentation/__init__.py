"""MC2 segmentation: networks, checkpoints, the inference pipeline, a classical method, training.

Nothing here imports napari or Qt. Heavy modules (torch) load when these names are first used.
"""
from __future__ import annotations

__all__ = ["segment", "SegmentationResult", "load_model", "LoadedModel", "resolve_device"]


def __getattr__(name):
    if name in ("segment", "SegmentationResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name in ("load_model", "LoadedModel", "resolve_device"):
        from . import registry

        return getattr(registry, name)
    raise AttributeError(name)
