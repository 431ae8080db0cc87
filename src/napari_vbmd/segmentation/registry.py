"""The names older callers import (the napari widget among them); the model reference, the loading and
the one cache live in :mod:`.models`."""
from __future__ import annotations

from pathlib import Path

from ..errors import VbmdError
from .models import DEFAULT_CHECKPOINT, MODEL_NAMES, LoadedModel, load, resolve, resolve_device

__all__ = ["DEFAULT_CHECKPOINT", "MODEL_NAMES", "LoadedModel", "load_model", "resolve_device"]


def load_model(spec: str | Path, device="auto") -> LoadedModel:
    """A network by name ('default') or checkpoint path, from the one model cache. 'classical' is not
    a network: pass it to ``segment()`` as it is."""
    ref = resolve(spec)
    if ref.classical:
        raise VbmdError("'classical' is not a network; segment() runs it without weights")
    return load(ref, device)
