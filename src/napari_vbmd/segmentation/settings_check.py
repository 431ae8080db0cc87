"""Bounds on every setting of a checkpoint's config and of a training run, checked before anything
is built, allocated, fetched or written.

A checkpoint is data from elsewhere: it may only describe a network of a known architecture within
sane sizes, and never make the program fetch (``imagenet_online``) or unpickle
(``encoder_weights_path``) anything. Training settings come from the user and are checked the same
way, so a bad value is one line, not a late failure with half a run folder written.
"""
from __future__ import annotations

import math
from pathlib import Path

from ..errors import VbmdError

#: working voxel size (mm) a network may run at: HR-pQCT voxels are 0.061-0.082 mm
SPACING_RANGE_MM = (0.05, 5.0)
MAX_CONTEXT_SLICES = 32
MAX_MEMBERS = 16
MAX_JSON_DEPTH = 32
#: architecture -> setting -> (kind, low, high); kind "int", "float" or a tuple of allowed values
ARCHITECTURE_SETTINGS = {
    "unet2d_small": {"in_channels": ("int", 1, 64), "base": ("int", 1, 256), "depth": ("int", 2, 8),
                     "norm": (("batch", "instance"),), "members": ("int", 1, MAX_MEMBERS)},
    "unet2d_resnet34": {"in_channels": ("int", 1, 64), "members": ("int", 1, MAX_MEMBERS)},
    "unet3d_isensee": {"in_channels": ("int", 1, 64), "base": ("int", 1, 64), "depth": ("int", 2, 7),
                       "first_stage_dropout": ("float", 0.0, 0.95), "members": ("int", 1, MAX_MEMBERS)},
}
#: what only a user at training time may ask for, never a checkpoint
FETCHING_SETTINGS = ("encoder_weights_path", "imagenet_online")
#: files `vbmd train` writes into its output folder
RUN_FILES = ("split.json", "metrics.csv", *(f"{stem}.{ext}" for stem in ("best", "last", "resume", "average")
                                            for ext in ("json", "safetensors")))


def whole_number(value, what: str, low: int, high: int, path=None) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise VbmdError(f"{what} must be a whole number, got {value!r}", path)
    if not low <= value <= high:
        raise VbmdError(f"{what} must be between {low} and {high}, got {value}", path)
    return value


def number(value, what: str, low: float, high: float, path=None, open_low: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise VbmdError(f"{what} must be a finite number, got {value!r}", path)
    if value > high or value < low or (open_low and value == low):
        bound = f"above {low}" if open_low else f"at least {low}"
        raise VbmdError(f"{what} must be {bound} and at most {high}, got {value}", path)
    return float(value)


def json_depth(value, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply lists and objects nest in a JSON value (stops counting past ``limit``)."""
    depth, level = 0, [value]
    while level and depth <= limit:
        depth += 1
        level = [v for item in level if isinstance(item, (dict, list))
                 for v in (item.values() if isinstance(item, dict) else item)]
        level = [v for v in level if isinstance(v, (dict, list))]
    return depth


def check_architecture_settings(architecture: str, kwargs, path=None, from_checkpoint: bool = True) -> None:
    from .architectures import ARCHITECTURE_DIMS

    if architecture not in ARCHITECTURE_DIMS:
        raise VbmdError(f"unknown network architecture {architecture!r}; known: {', '.join(sorted(ARCHITECTURE_DIMS))}",
                        path)
    if not isinstance(kwargs, dict):
        raise VbmdError(f"architecture settings must be a JSON object, got {type(kwargs).__name__}", path)
    fetching = sorted(set(kwargs) & set(FETCHING_SETTINGS))
    if fetching:
        where = ("a checkpoint never makes the program fetch or unpickle anything" if from_checkpoint
                 else "use --encoder-weights or --imagenet-online")
        raise VbmdError(f"architecture settings name {', '.join(fetching)}: {where}", path)
    allowed = ARCHITECTURE_SETTINGS[architecture]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise VbmdError(f"unknown setting(s) {unknown} for {architecture}; known: {', '.join(sorted(allowed))}", path)
    for key, value in kwargs.items():
        rule = allowed[key]
        if rule[0] == "int":
            whole_number(value, f"{architecture} setting {key}", rule[1], rule[2], path)
        elif rule[0] == "float":
            number(value, f"{architecture} setting {key}", rule[1], rule[2], path)
        elif value not in rule[0]:
            raise VbmdError(f"{architecture} setting {key} must be one of {', '.join(rule[0])}, got {value!r}", path)


def spacing_triplet(values, what: str, path=None) -> tuple[float, float, float]:
    try:
        values = tuple(values)
    except TypeError:
        raise VbmdError(f"{what} must be three sizes in mm, got {values!r}", path) from None
    if len(values) != 3:
        raise VbmdError(f"{what} must be three sizes in mm (z, y, x), got {len(values)}", path)
    low, high = SPACING_RANGE_MM
    return tuple(number(v, what, low, high, path) for v in values)


def context_offsets_mm(values, path=None) -> tuple[float, ...]:
    try:
        values = tuple(values)
    except TypeError:
        raise VbmdError(f"slice context must be a list of offsets in mm, got {values!r}", path) from None
    if not 1 <= len(values) <= MAX_CONTEXT_SLICES:
        raise VbmdError(f"slice context must be 1 to {MAX_CONTEXT_SLICES} offsets, got {len(values)}", path)
    return tuple(number(v, "slice context offset (mm, must be finite)", -100.0, 100.0, path) for v in values)


def check_config_dict(data: dict, path=None) -> None:
    """Every field of a checkpoint config (already known to be a dict of known keys) within bounds."""
    from .postprocess import EDGE_LEVEL_RANGE, MAX_BOUNDARY_BAND_MM

    check_architecture_settings(data.get("architecture"), data.get("kwargs", {}), path)
    if "spacing_mm" in data:
        spacing_triplet(data["spacing_mm"], "working spacing", path)
    if "mean" in data:
        number(data["mean"], "normalisation mean", -1e5, 1e5, path)
    if "std" in data:
        number(data["std"], "normalisation std", 0.0, 1e5, path, open_low=True)
    if "threshold" in data:
        number(data["threshold"], "probability threshold", 0.0, 1.0, path, open_low=True)
        if data["threshold"] >= 1:
            raise VbmdError(f"probability threshold must be below 1, got {data['threshold']}", path)
    if "crop_margin_mm" in data:
        number(data["crop_margin_mm"], "crop margin (mm)", 0.0, 100.0, path)
    if "context_mm" in data:
        context_offsets_mm(data["context_mm"], path)
    if "boundary_band_mm" in data:
        number(data["boundary_band_mm"], "boundary band (mm)", 0.0, MAX_BOUNDARY_BAND_MM, path)
    if "edge_level" in data:
        number(data["edge_level"], "boundary refinement edge level", *EDGE_LEVEL_RANGE, path)
    for key in ("name", "project_version"):
        if key in data and (not isinstance(data[key], str) or len(data[key]) > 500):
            raise VbmdError(f"{key} must be a text of at most 500 characters", path)
    if "training" in data:
        if not isinstance(data["training"], dict):
            raise VbmdError("the training record must be a JSON object", path)
        if json_depth(data["training"]) > MAX_JSON_DEPTH:
            raise VbmdError(f"the training record nests more than {MAX_JSON_DEPTH} levels deep", path)


def check_train_settings(settings, out_dir: str | Path | None = None) -> None:
    """Every training setting within bounds, and no input the run would write over; before anything
    is read, built or written."""
    from .architectures import network_dims
    from .training import APPEARANCES, FLIPS, LOSSES, LR_SCHEDULES

    s = settings
    check_architecture_settings(s.architecture, s.kwargs, from_checkpoint=False)
    spacing_triplet(s.spacing_mm, "working spacing (--spacing-mm)")
    if isinstance(s.epochs, int) and not isinstance(s.epochs, bool) and s.epochs < 1:
        raise VbmdError(f"epochs must be at least 1, got {s.epochs}")
    whole_number(s.epochs, "epochs", 1, 100_000)
    if s.steps_per_epoch is not None:
        whole_number(s.steps_per_epoch, "steps per epoch", 1, 10_000_000)
    if s.batch_size is not None:
        whole_number(s.batch_size, "batch size", 1, 4096)
    if s.lr is not None:
        number(s.lr, "learning rate (--lr)", 0.0, 1.0, open_low=True)
    dims = network_dims(s.architecture)
    patch = tuple(s.patch)
    if len(patch) != dims:
        raise VbmdError(f"patch must have {dims} sizes for a {dims}D network, got {patch}")
    for size in patch:
        whole_number(size, "patch size (working voxels)", 8, 4096)
    if s.flips not in FLIPS:
        raise VbmdError(f"unknown flips setting {s.flips!r}; use {', '.join(FLIPS)}")
    if s.appearance not in APPEARANCES:
        raise VbmdError(f"unknown appearance augmentation {s.appearance!r}; use {' or '.join(APPEARANCES)}")
    for what, seed in (("seed", s.seed), ("split_seed", s.split_seed)):
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or not 0 <= seed < 2**63):
            raise VbmdError(f"{what} must be a whole number >= 0, got {seed}")
    number(s.threshold, "probability threshold", 0.0, 1.0, open_low=True)
    if s.threshold >= 1:
        raise VbmdError(f"probability threshold must be below 1, got {s.threshold}")
    number(s.crop_margin_mm, "crop margin (mm)", 0.0, 100.0)
    if not isinstance(s.name, str) or not s.name.strip() or len(s.name) > 200:
        raise VbmdError(f"model name must be a text of 1 to 200 characters, got {s.name!r}")
    if s.max_minutes is not None:
        number(s.max_minutes, "time budget (--max-minutes)", 0.0, 1e6, open_low=True)
    whole_number(s.validate_every, "validation interval (--validate-every)", 1, 1_000_000)
    if s.stop_after is not None:
        whole_number(s.stop_after, "last epoch of this run (--stop-after)", 1, s.epochs)
    number(s.empty_slice_fraction, "empty slice fraction", 0.0, 1.0)
    if s.loss not in LOSSES:
        raise VbmdError(f"unknown loss {s.loss!r}; use {' or '.join(LOSSES)}")
    if s.average_from is not None and (isinstance(s.average_from, bool) or not isinstance(s.average_from, int)
                                       or not 1 <= s.average_from <= s.epochs):
        raise VbmdError(f"average_from must be an epoch between 1 and {s.epochs}, got {s.average_from}")
    context_offsets_mm(s.context_mm)
    if s.lr_schedule not in LR_SCHEDULES:
        raise VbmdError(f"unknown learning-rate schedule {s.lr_schedule!r}; use {' or '.join(LR_SCHEDULES)}")
    if isinstance(s.warmup_epochs, bool) or not isinstance(s.warmup_epochs, int) or not 0 <= s.warmup_epochs < s.epochs:
        raise VbmdError(f"warmup_epochs must be between 0 and {s.epochs - 1} (fewer than the epochs), "
                        f"got {s.warmup_epochs}")
    if s.grad_clip is not None and (isinstance(s.grad_clip, bool) or not isinstance(s.grad_clip, (int, float))
                                    or not (math.isfinite(s.grad_clip) and s.grad_clip > 0)):
        raise VbmdError(f"grad_clip must be a positive number, got {s.grad_clip}")
    if s.encoder_weights_path is not None and s.imagenet_online:
        raise VbmdError("give either local encoder weights (--encoder-weights) or --imagenet-online, not both")
    if s.encoder_weights_path is not None:
        weights = Path(s.encoder_weights_path)
        if s.architecture != "unet2d_resnet34":
            raise VbmdError(f"encoder weights are for unet2d_resnet34, not {s.architecture}", weights)
        if not weights.is_file():
            raise VbmdError("encoder weights file not found", weights)
        if weights.suffix.lower() not in (".safetensors", ".pth", ".pt"):
            raise VbmdError("encoder weights must be .safetensors (or a torch .pth, read tensors-only)", weights)
    if out_dir is not None:
        check_run_inputs(settings, out_dir)


def check_run_inputs(settings, out_dir: str | Path) -> None:
    """Refuse a run whose output folder would write over a file it reads (e.g. --init R/best.json -o R)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise VbmdError("exists and is not a folder; give a folder for the run", out_dir)
    inputs = []
    if settings.init:
        init = Path(settings.init)
        stem = init.with_suffix("") if init.suffix in (".json", ".safetensors") else init
        inputs += [stem.with_suffix(".json"), stem.with_suffix(".safetensors")]
        if init.is_dir():
            inputs += [init / name for name in RUN_FILES]
    if settings.encoder_weights_path:
        inputs.append(Path(settings.encoder_weights_path))
    for name in RUN_FILES:
        target = out_dir / name
        if any(source.exists() and target.exists() and source.resolve() == target.resolve() for source in inputs):
            raise VbmdError("is read by this run (--init/--encoder-weights) and the run would write over it; "
                            "copy it elsewhere or choose another output folder", target)
