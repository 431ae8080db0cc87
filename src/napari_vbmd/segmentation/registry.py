"""Model names the user can give (``--model``), the bundled checkpoint, and devices."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ..errors import VbmdError
from .checkpoint import ModelConfig, load_checkpoint

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_CHECKPOINT = BUNDLED_DIR / "default"

#: names that are not paths
MODEL_NAMES = ("default", "unet2d", "unet3d", "classical")

_NO_WEIGHTS = (
    "no trained weights are bundled for {name!r} ({what}): the study's weights were never published. "
    "Train one with `vbmd train DATA -o DIR --architecture {arch}` and pass --model DIR/best.json, "
    "or use --model default (phantom-trained) or --model classical"
)


@dataclass
class LoadedModel:
    network: nn.Module
    config: ModelConfig
    name: str
    device: torch.device
    source: str


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """'auto' -> CUDA, then MPS, then CPU; a forced device that is not there is an error."""
    if isinstance(device, torch.device):
        device = str(device)
    device = (device or "auto").lower()
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if mps_ok:
            return torch.device("mps")
        return torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VbmdError(f"device {device!r} requested but CUDA is not available on this machine (use --device cpu or auto)")
        return torch.device(device)
    if device == "mps":
        if not mps_ok:
            raise VbmdError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    if device == "cpu":
        return torch.device("cpu")
    raise VbmdError(f"unknown device {device!r}; use auto, cpu, cuda, cuda:N or mps")


def load_model(spec: str | Path, device: str | torch.device | None = "auto") -> LoadedModel:
    """A model by name ('default') or checkpoint path. 'classical' is not a network: see pipeline."""
    torch_device = resolve_device(device)
    name = str(spec)
    if name == "default":
        path = DEFAULT_CHECKPOINT
        if not path.with_suffix(".json").is_file():
            raise VbmdError("the bundled default model is missing from this installation", path.with_suffix(".json"))
    elif name == "unet2d":
        raise VbmdError(_NO_WEIGHTS.format(name=name, what="the study's 2D U-Net, ResNet34 encoder", arch="unet2d_resnet34"))
    elif name == "unet3d":
        raise VbmdError(_NO_WEIGHTS.format(name=name, what="the study's 3D U-Net", arch="unet3d_isensee"))
    elif name == "classical":
        raise VbmdError("'classical' is not a network; segment() runs it without weights")
    else:
        path = Path(name)
        if not path.exists() and not path.with_suffix(".json").exists():
            raise VbmdError(
                f"unknown model {name!r}: give one of {', '.join(MODEL_NAMES)} or a checkpoint path "
                "(NAME.json beside NAME.safetensors, or a folder holding them)"
            )
    network, config = load_checkpoint(path, device=torch_device)
    label = name if name in MODEL_NAMES else config.name
    return LoadedModel(network, config, label, torch_device, str(path))
