"""MC2 segmentation: networks, checkpoints, the stages and the pipeline, a classical method, training.

Nothing here imports napari or Qt. Heavy modules (torch) load when these names are first used.
"""
from __future__ import annotations

__all__ = ["segment", "run", "SegmentationResult", "SegmentSettings", "load_model", "LoadedModel", "resolve_device",
           "resolve", "load"]


def __getattr__(name):
    if name in ("segment", "run", "SegmentationResult"):
        from . import pipeline

        return getattr(pipeline, name)
    if name == "SegmentSettings":
        from .settings import SegmentSettings

        return SegmentSettings
    if name in ("LoadedModel", "resolve_device", "resolve", "load", "load_model"):
        from . import models

        return getattr(models, name)
    raise AttributeError(name)
