"""Checkpoints: weights in safetensors beside a JSON config. No pickle is ever loaded.

A checkpoint is two files with one stem, ``NAME.safetensors`` and ``NAME.json``. The JSON says
which architecture the weights belong to (and its settings), the working spacing in mm, the
normalisation statistics (of densities in mg HA/cm³), the probability threshold, what the model was
trained on, the project version that wrote it and the format version. Anything else is refused
with a :class:`~napari_vbmd.errors.VbmdError` naming the file.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._atomic import atomic_path, non_regular_reason, write_text_atomic
from ..errors import VbmdError
from .architectures import ARCHITECTURE_DIMS, architecture_kwargs, ensemble_members, network_dims
from .postprocess import DEFAULT_EDGE_LEVEL, EDGE_LEVEL_RANGE, MAX_BOUNDARY_BAND_MM
from .settings_check import check_config_dict

if TYPE_CHECKING:  # torch is imported where a network is built, not to read a config
    import torch
    from torch import nn

FORMAT = "napari-vbmd-checkpoint"
FORMAT_VERSION = 1


@dataclass
class ModelConfig:
    architecture: str
    kwargs: dict[str, Any] = field(default_factory=dict)
    #: working voxel spacing (z, y, x) in mm; for 2D networks z is ignored (slices stay native).
    spacing_mm: tuple[float, float, float] = (0.25, 0.25, 0.25)
    #: z-score statistics of the input densities (mg HA/cm³).
    mean: float = 0.0
    std: float = 1.0
    threshold: float = 0.5
    #: margin (mm) kept around the detected bone region when cropping.
    crop_margin_mm: float = 4.0
    #: 2D networks: the slices stacked as input channels, as offsets (mm along z) from the slice being
    #: segmented; (0.0,) is the slice alone. Neighbours beyond the bone region repeat its end slice.
    context_mm: tuple[float, ...] = (0.0,)
    #: after thresholding, move the boundary within this many mm onto the scan's half-maximum edge
    #: (postprocess.refine_boundary); 0 keeps the network's own boundary
    boundary_band_mm: float = 0.0
    #: where the refinement puts the edge between the darkest and brightest nearby density (0.5: the
    #: half-maximum); chosen with the band on validation data
    edge_level: float = DEFAULT_EDGE_LEVEL
    name: str = "model"
    training: dict[str, Any] = field(default_factory=dict)
    project_version: str = ""
    format: str = FORMAT
    format_version: int = FORMAT_VERSION

    @property
    def dims(self) -> int:
        return network_dims(self.architecture)

    def to_dict(self) -> dict:
        out = dataclasses.asdict(self)
        out["spacing_mm"] = list(self.spacing_mm)
        out["context_mm"] = list(self.context_mm)
        return out

    @classmethod
    def from_dict(cls, data: dict, path: Path | None = None) -> "ModelConfig":
        if not isinstance(data, dict):
            raise VbmdError("checkpoint config is not a JSON object", path)
        if data.get("format") != FORMAT:
            raise VbmdError(f"not a napari-vbmd checkpoint (format {data.get('format')!r})", path)
        if data.get("format_version") != FORMAT_VERSION:
            raise VbmdError(
                f"checkpoint format version {data.get('format_version')!r} is not supported "
                f"(this napari-vbmd reads version {FORMAT_VERSION})",
                path,
            )
        if data.get("architecture") not in ARCHITECTURE_DIMS:
            raise VbmdError(
                f"checkpoint is for architecture {data.get('architecture')!r}, which this napari-vbmd does not "
                f"know (known: {', '.join(sorted(ARCHITECTURE_DIMS))})",
                path,
            )
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VbmdError(f"checkpoint config has unknown keys {unknown}", path)
        try:
            check_config_dict(data, path)  # bounds on every field before anything is built
        except VbmdError as exc:
            raise VbmdError(f"checkpoint config has invalid values: {exc.problem}", path) from None
        try:
            config = cls(**data)
            config.spacing_mm = tuple(float(s) for s in config.spacing_mm)
            config.context_mm = tuple(float(c) for c in config.context_mm)
            config.boundary_band_mm = float(config.boundary_band_mm)
            config.edge_level = float(config.edge_level)
            numbers = [*config.spacing_mm, *config.context_mm, config.mean, config.std, config.threshold,
                       config.crop_margin_mm, config.boundary_band_mm, config.edge_level]
            ok = (
                len(config.spacing_mm) == 3
                and len(config.context_mm) >= 1
                and all(math.isfinite(float(v)) for v in numbers)
                and all(s > 0 for s in config.spacing_mm)
                and config.std > 0
                and 0 < config.threshold < 1
                and 0 <= config.boundary_band_mm <= MAX_BOUNDARY_BAND_MM
                and EDGE_LEVEL_RANGE[0] <= config.edge_level <= EDGE_LEVEL_RANGE[1]
                and isinstance(config.kwargs, dict)
            )
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise VbmdError("checkpoint config has invalid values (spacing, context, mean/std, threshold, "
                        "boundary band, edge level)", path)
        check_context(config.architecture, config.context_mm, config.kwargs, path)
        return config


def check_context(architecture: str, context_mm, kwargs: dict, path: Path | None = None) -> None:
    """Slice context must be one or more finite offsets (mm) and fit the network: 2D only, one input
    channel per offset."""
    if not len(context_mm) or not all(math.isfinite(float(c)) for c in context_mm):
        raise VbmdError(f"slice context must be one or more finite offsets in mm, got {list(context_mm)}", path)
    if network_dims(architecture) != 2 and tuple(context_mm) != (0.0,):
        raise VbmdError(f"slice context {list(context_mm)} is for 2D networks; {architecture} is 3D", path)
    channels = int(kwargs.get("in_channels", 1))
    if channels != len(context_mm):
        raise VbmdError(f"{len(context_mm)} context slices need {len(context_mm)} input channels; the network "
                        f"has {channels}", path)


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(json, safetensors) for a checkpoint named by either file, its stem, or a folder holding one."""
    path = Path(path)
    if path.is_dir():
        configs = sorted(path.glob("*.json"))
        configs = [c for c in configs if c.with_suffix(".safetensors").is_file()]
        best = [c for c in configs if c.stem == "best"]
        if best:
            configs = best
        if len(configs) != 1:
            raise VbmdError(
                "folder holds no checkpoint (NAME.json + NAME.safetensors)" if not configs
                else f"folder holds {len(configs)} checkpoints; name one file",
                path,
            )
        path = configs[0]
    if path.suffix in (".json", ".safetensors"):
        stem = path.with_suffix("")
    else:
        stem = path
    config_path, weights_path = stem.with_suffix(".json"), stem.with_suffix(".safetensors")
    for p in (config_path, weights_path):
        reason = non_regular_reason(p)
        if reason:
            raise VbmdError("checkpoint file not found" if reason == "no such file" else reason, p)
    return config_path, weights_path


MAX_CONFIG_BYTES = 16 * 2**20


def read_config(path: str | Path) -> ModelConfig:
    config_path, _ = checkpoint_paths(path)
    if config_path.stat().st_size > MAX_CONFIG_BYTES:
        raise VbmdError("checkpoint config is larger than 16 MB: not a config", config_path)
    try:
        data = json.loads(config_path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise VbmdError(f"checkpoint config is not valid JSON ({exc})", config_path) from None
    except RecursionError:
        raise VbmdError("checkpoint config nests too deeply to be a config", config_path) from None
    except OSError as exc:
        raise VbmdError(f"cannot read checkpoint config ({exc.strerror})", config_path) from None
    return ModelConfig.from_dict(data, config_path)


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> tuple[nn.Module, ModelConfig]:
    """Build the network a checkpoint describes and load its weights (eval mode)."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    from .networks import build_network

    config_path, weights_path = checkpoint_paths(path)
    config = read_config(config_path)
    model = build_network(config.architecture, **config.kwargs)
    try:
        state = load_file(str(weights_path), device="cpu")
    except (SafetensorError, OSError, ValueError, RuntimeError) as exc:
        raise VbmdError(f"weights file is corrupt or not safetensors ({exc})", weights_path) from None
    expected = model.state_dict()
    if set(state) != set(expected) or any(tuple(state[k].shape) != tuple(expected[k].shape) for k in expected):
        raise VbmdError(f"weights do not match the {config.architecture} architecture its config names", weights_path)
    cast = [k for k in expected if state[k].dtype != expected[k].dtype
            and not (state[k].dtype.is_floating_point and expected[k].dtype.is_floating_point)]
    if cast:
        raise VbmdError(f"weights of type {state[cast[0]].dtype} where the network holds {expected[cast[0]].dtype} "
                        f"({cast[0]}): not this network's weights", weights_path)
    bad = [k for k in expected if state[k].dtype.is_floating_point and not bool(torch.isfinite(state[k]).all())]
    if bad:
        raise VbmdError(f"weights hold NaN or infinite values ({bad[0]})", weights_path)
    model.load_state_dict(state, strict=True)
    model.to(device)
    model.eval()
    return model, config


def save_checkpoint(path: str | Path, model: nn.Module, config: ModelConfig) -> tuple[Path, Path]:
    """Write ``path``.safetensors and ``path``.json atomically (path may carry either suffix)."""
    from safetensors.torch import save_file

    from .. import __version__

    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    config = dataclasses.replace(
        config,
        kwargs=architecture_kwargs(config.kwargs),
        project_version=config.project_version or __version__,
        format=FORMAT,
        format_version=FORMAT_VERSION,
    )
    state = {k: v.detach().to("cpu").contiguous() for k, v in model.state_dict().items()}
    weights_path = stem.with_suffix(".safetensors")
    with atomic_path(weights_path) as tmp:
        save_file(state, str(tmp), metadata={"format": FORMAT, "architecture": config.architecture})
    config_path = write_text_atomic(stem.with_suffix(".json"), json.dumps(config.to_dict(), indent=2) + "\n")
    return config_path, weights_path


def make_ensemble(members: list[str | Path], path: str | Path, name: str | None = None) -> tuple[Path, Path]:
    """Combine checkpoints of one recipe trained apart (other seeds, the same data and split) into one
    checkpoint whose network answers with their mean probability.

    The members must agree on everything the pipeline does around the network (architecture and its
    settings, working spacing, normalisation statistics, slice context, crop margin); otherwise their
    probabilities would not be of the same input. The threshold and boundary band are the first
    member's until the ensemble is calibrated on validation data
    (:func:`napari_vbmd.segmentation.calibrate.calibrate_threshold`).
    """
    from .networks import MeanProbabilityEnsemble

    if len(members) < 2:
        raise VbmdError(f"an ensemble needs at least 2 checkpoints, got {len(members)}")
    loaded = []
    for member in members:
        config_path, _ = checkpoint_paths(member)
        network, config = load_checkpoint(config_path, device="cpu")
        if ensemble_members(config.kwargs) > 1:
            raise VbmdError("checkpoint is already an ensemble; combine its original members", config_path)
        loaded.append((network, config, config_path))
    _, first, first_path = loaded[0]
    for _, config, config_path in loaded[1:]:
        checks = {
            "architecture": config.architecture == first.architecture,
            "architecture settings": config.kwargs == first.kwargs,
            "working spacing": config.spacing_mm == first.spacing_mm,
            "normalisation statistics": math.isclose(config.mean, first.mean, rel_tol=1e-6, abs_tol=1e-6)
            and math.isclose(config.std, first.std, rel_tol=1e-6),
            "slice context": config.context_mm == first.context_mm,
            "crop margin": config.crop_margin_mm == first.crop_margin_mm,
        }
        differ = [what for what, same in checks.items() if not same]
        if differ:
            raise VbmdError(f"cannot join {first_path.name}'s ensemble: its {', '.join(differ)} differ "
                            "(members must be one recipe on the same data, other seeds)", config_path)
    ensemble = MeanProbabilityEnsemble([network for network, _, _ in loaded])
    datas = {config.training.get("data") for _, config, _ in loaded}
    config = dataclasses.replace(
        first,
        kwargs={**first.kwargs, "members": len(loaded)},
        name=name or first.name,
        training={
            "data": datas.pop() if len(datas) == 1 else None,
            "ensemble_of": [{"checkpoint": str(config_path), "name": config.name, "training": config.training}
                            for _, config, config_path in loaded],
        },
        project_version="",
    )
    return save_checkpoint(path, ensemble, config)
