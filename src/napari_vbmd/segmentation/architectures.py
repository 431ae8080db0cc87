"""What a checkpoint can name without building anything: the architectures, their dimensionality and
the settings that define them. Torch-free, so reading a checkpoint's config (``vbmd info``, ``--model``
checks, inference through ONNX Runtime) does not import torch; :mod:`.networks` builds them."""
from __future__ import annotations

from ..errors import VbmdError

#: name -> dimensionality of the network (2: slice by slice, 3: whole volumes)
ARCHITECTURE_DIMS: dict[str, int] = {
    "unet2d_resnet34": 2,
    "unet2d_small": 2,
    "unet3d_isensee": 3,
}

# Keyword arguments that only matter when building from scratch (weights files, downloads); they are
# not part of a checkpoint's architecture.
INIT_ONLY_KWARGS = {"encoder_weights_path", "imagenet_online"}


def network_dims(architecture: str) -> int:
    if architecture not in ARCHITECTURE_DIMS:
        raise VbmdError(f"unknown network architecture {architecture!r}")
    return ARCHITECTURE_DIMS[architecture]


def ensemble_members(kwargs: dict) -> int:
    """How many networks a checkpoint's architecture settings describe (1 unless an ensemble)."""
    return int(kwargs.get("members", 1))


def architecture_kwargs(kwargs: dict) -> dict:
    """The kwargs that define the architecture (what a checkpoint stores)."""
    return {k: v for k, v in kwargs.items() if k not in INIT_ONLY_KWARGS}
