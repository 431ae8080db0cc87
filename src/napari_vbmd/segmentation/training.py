"""Training and fine-tuning (``vbmd train``).

Pairs are split by patient 70/20/10 with a seed (``split.json``; the test split is never read
during training), prepared like the inference pipeline prepares a scan, and a network is trained
with the Dice loss and Adam (the study's settings by default: 2D lr 1e-5 batch 4, 3D lr 1e-4
batch 1). Augmentation: intensity scale/shift/noise, small rotations, directional blur (like
motion) and, on request, flips. Flips are off by default: the pipeline turns every hand into a right
hand, and a mirror flip turns it back into a left one, where MC3 sits where MC2 should be; a network
trained with mirror flips cannot tell the two by position (the first default model marked MC3 on
phantoms for this reason). ``context_mm`` (2D) stacks the slices at those offsets (mm along z) as
input channels, so the network can see which side of the joint a slice lies on. Every epoch:
validation Dice/IoU/AUC/accuracy to ``metrics.csv``; the best checkpoint by
validation Dice is ``best.json``/``best.safetensors``, the latest ``last.*`` plus ``resume.*``
(optimizer state in safetensors, never pickle) so ``--resume`` continues where it stopped.

``average_from`` (``--average-from``) is stochastic weight averaging: from that epoch on, the weights
after each epoch join an equal-weight average (``torch.optim.swa_utils.AveragedModel``), and the
average, not the raw weights, is validated and becomes ``best.*``. At a constant learning rate the
raw weights of a small data set swing from epoch to epoch; their average sits in a flatter, more
stable place. Batch-norm statistics of the average are recomputed on training batches.

``lr_schedule="cosine"`` lowers the learning rate from ``lr`` to ``lr/100`` over the run (after an
optional linear warm-up), and ``grad_clip`` caps the gradients' total norm before each Adam step; a
constant lr 1e-3 on batches of four once threw a converged run off (loss 0.11 back to 1.08). Each
epoch's lr and median gradient norm (before clipping) are in ``metrics.csv``; a non-finite loss
stops the run with an error instead of writing NaN weights.
"""
from __future__ import annotations

import csv
import dataclasses
import json
import math
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

from .._atomic import atomic_path, write_text_atomic
from ..errors import CancelledError, VbmdError
from .checkpoint import ModelConfig, check_context, load_checkpoint, save_checkpoint
from .datasets import PreparedCase, find_pairs, load_pair, prepare_case, split_by_patient
from .preprocess import context_indices, context_offsets
from .networks import architecture_kwargs, build_network, network_dims, size_multiple
from .registry import resolve_device
from .settings_check import check_train_settings

STUDY_DEFAULTS = {2: {"lr": 1e-5, "batch_size": 4}, 3: {"lr": 1e-4, "batch_size": 1}}
METRIC_COLUMNS = ["epoch", "train_loss", "val_dice", "val_iou", "val_auc", "val_accuracy", "lr", "seconds",
                  "grad_norm"]
LR_SCHEDULES = ("constant", "cosine")


@dataclass
class TrainSettings:
    architecture: str = "unet2d_small"
    kwargs: dict = field(default_factory=dict)
    spacing_mm: tuple[float, float, float] = (0.25, 0.25, 0.25)
    epochs: int = 50
    steps_per_epoch: int | None = None  # None: one pass over the training slices/cases
    batch_size: int | None = None  # None: the study's (2D 4, 3D 1)
    lr: float | None = None  # None: the study's (2D 1e-5, 3D 1e-4)
    patch: tuple[int, ...] = (160, 160)  # 2D (h, w) or 3D (z, h, w) in working voxels
    augment: bool = True
    flips: str = "none"  # "none", "rot180" (both in-plane axes at once: keeps the hand's chirality) or "all"
    seed: int = 0
    split_seed: int | None = None  # seed of the patient split; None: ``seed`` (members of an ensemble share one split)
    threshold: float = 0.5
    crop_margin_mm: float = 4.0
    name: str = "model"
    max_minutes: float | None = None
    init: str | None = None  # fine-tune from this checkpoint
    encoder_weights_path: str | None = None
    imagenet_online: bool = False
    empty_slice_fraction: float = 0.25  # share of 2D training samples drawn from slices without MC2
    loss: str = "dice"  # the study's; "dice_bce" adds binary cross-entropy (converges faster)
    average_from: int | None = None  # from this epoch on, validate and keep an equal-weight average of the weights
    context_mm: tuple[float, ...] = (0.0,)  # 2D: slices stacked as input channels, offsets in mm along z
    lr_schedule: str = "constant"  # "cosine": from lr down to lr/100 at the last epoch
    warmup_epochs: int = 0  # linear warm-up from lr/warmup_epochs to lr over the first epochs
    grad_clip: float | None = None  # clip the gradients' total L2 norm to this before each step


def epoch_lr(settings: TrainSettings, lr: float, epoch: int) -> float:
    """The learning rate of an epoch (1-based): a function of its number alone, so a resumed run follows it too."""
    if epoch <= settings.warmup_epochs:
        return lr * epoch / settings.warmup_epochs
    if settings.lr_schedule == "constant":
        return lr
    span = settings.epochs - settings.warmup_epochs
    progress = (epoch - settings.warmup_epochs - 1) / max(1, span - 1)  # 0 at the first epoch after warm-up, 1 at the last
    floor = lr / 100
    return floor + (lr - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def dice_loss(logits: torch.Tensor, target: torch.Tensor, eps: float = 1.0) -> torch.Tensor:
    prob = torch.sigmoid(logits)
    dims = tuple(range(1, prob.ndim))
    intersection = (prob * target).sum(dims)
    total = prob.sum(dims) + target.sum(dims)
    return (1 - (2 * intersection + eps) / (total + eps)).mean()


LOSSES = ("dice", "dice_bce")


def training_loss(kind: str, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    if kind == "dice":
        return dice_loss(logits, target)
    if kind == "dice_bce":
        return dice_loss(logits, target) + F.binary_cross_entropy_with_logits(logits, target)
    raise VbmdError(f"unknown loss {kind!r}; use {' or '.join(LOSSES)}")


def segmentation_metrics(prob: np.ndarray, truth: np.ndarray, threshold: float = 0.5) -> dict[str, float]:
    """Dice, IoU, accuracy at ``threshold`` and AUC (on at most 200k voxels) of one prediction."""
    from sklearn.metrics import roc_auc_score

    pred = prob >= threshold
    truth = truth >= 0.5
    inter = np.logical_and(pred, truth).sum()
    total = pred.sum() + truth.sum()
    union = np.logical_or(pred, truth).sum()
    flat_p, flat_t = prob.ravel(), truth.ravel()
    if flat_p.size > 200_000:
        idx = np.random.default_rng(0).choice(flat_p.size, 200_000, replace=False)
        flat_p, flat_t = flat_p[idx], flat_t[idx]
    auc = float(roc_auc_score(flat_t, flat_p)) if 0 < flat_t.sum() < flat_t.size else float("nan")
    return {
        "dice": float(2 * inter / total) if total else 1.0,
        "iou": float(inter / union) if union else 1.0,
        "auc": auc,
        "accuracy": float((pred == truth).mean()),
    }


# -- augmentation -------------------------------------------------------------------------------------


FLIPS = ("none", "rot180", "all")


def _flip_axes(flips: str, rng: np.random.Generator) -> tuple[int, ...]:
    """The in-plane axes to flip for one sample. "all" flips each axis with probability 1/2 (a single
    flip mirrors the hand); "rot180" flips both or neither (a rotation, the hand stays a right hand)."""
    if flips == "none":
        return ()
    if flips == "rot180":
        return (-1, -2) if rng.random() < 0.5 else ()
    if flips == "all":
        return tuple(axis for axis in (-1, -2) if rng.random() < 0.5)
    raise VbmdError(f"unknown flips setting {flips!r}; use {', '.join(FLIPS)}")


def _augment_2d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none"):
    """images: (b, c, h, w) (c context slices), masks: (b, 1, h, w); images in mg HA/cm³ (before z-scoring)."""
    b = images.shape[0]
    for i in range(b):
        axes = _flip_axes(flips, rng)
        if axes:
            images[i], masks[i] = images[i].flip(axes), masks[i].flip(axes)
    angles = torch.tensor(rng.uniform(-10, 10, b) * math.pi / 180, dtype=torch.float32)
    cos, sin = torch.cos(angles), torch.sin(angles)
    theta = torch.zeros(b, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1], theta[:, 1, 0], theta[:, 1, 1] = cos, -sin, sin, cos
    grid = F.affine_grid(theta, images.shape, align_corners=False)  # the same motion for every context slice
    background = images.amin(dim=(1, 2, 3), keepdim=True)
    images = F.grid_sample(images - background, grid, align_corners=False, padding_mode="zeros") + background
    masks = F.grid_sample(masks, grid, align_corners=False, padding_mode="zeros")
    # directional blur, like patient motion
    channels = images.shape[1]
    for i in range(b):
        if rng.random() < 0.3:
            length = int(rng.integers(2, 6)) * 2 + 1
            kernel = torch.full((channels, 1, 1, length), 1.0 / length)
            if rng.random() < 0.5:
                kernel = kernel.transpose(-1, -2)
            pad = (length // 2, length // 2, 0, 0) if kernel.shape[-1] > 1 else (0, 0, length // 2, length // 2)
            images[i : i + 1] = F.conv2d(F.pad(images[i : i + 1], pad, mode="replicate"), kernel, groups=channels)
    scale = torch.tensor(rng.uniform(0.9, 1.1, (b, 1, 1, 1)), dtype=torch.float32)
    shift = torch.tensor(rng.uniform(-30, 30, (b, 1, 1, 1)), dtype=torch.float32)
    noise = torch.randn_like(images) * torch.tensor(rng.uniform(0, 40, (b, 1, 1, 1)), dtype=torch.float32)
    return images * scale + shift + noise, masks


def _augment_3d(images: torch.Tensor, masks: torch.Tensor, rng: np.random.Generator, flips: str = "none"):
    axes = _flip_axes(flips, rng)
    if axes:
        images, masks = images.flip(axes), masks.flip(axes)
    scale, shift = float(rng.uniform(0.9, 1.1)), float(rng.uniform(-30, 30))
    return images * scale + shift + torch.randn_like(images) * float(rng.uniform(0, 40)), masks


# -- sampling -----------------------------------------------------------------------------------------


def _crop_or_pad(array: np.ndarray, size: tuple[int, ...], start: tuple[int, ...], fill: float) -> np.ndarray:
    out = np.full(size, fill, dtype=np.float32)
    src, dst = [], []
    for n, s, st in zip(array.shape, size, start):
        # st may be negative (pad before) when the array is smaller than the patch
        lo, hi = max(st, 0), min(st + s, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - st, hi - st))
    out[tuple(dst)] = array[tuple(src)]
    return out


def _random_start(n: int, s: int, rng, centre: int | None = None) -> int:
    if n <= s:
        return -int(rng.integers(0, s - n + 1))
    if centre is not None:
        lo = int(np.clip(centre - s + 16, 0, n - s))
        hi = int(np.clip(centre - 16, 0, n - s))
        if hi >= lo:
            return int(rng.integers(lo, hi + 1))
    return int(rng.integers(0, n - s + 1))


class _Sampler2D:
    def __init__(self, cases: list[PreparedCase], patch, empty_fraction: float, context_mm=(0.0,)):
        self.cases, self.patch = cases, tuple(patch)
        self.offsets = [context_offsets(context_mm, case.spacing_z) for case in cases]
        self.with_bone = [(c, z) for c, case in enumerate(cases) for z in np.flatnonzero(case.mask.max(axis=(1, 2)) > 0.5)]
        self.without = [(c, z) for c, case in enumerate(cases) for z in np.flatnonzero(case.mask.max(axis=(1, 2)) <= 0.5)]
        self.empty_fraction = empty_fraction if self.without else 0.0
        if not self.with_bone:
            raise VbmdError("no training slice holds MC2")

    def __len__(self):
        return len(self.with_bone) + len(self.without)

    def batch(self, n: int, rng) -> tuple[np.ndarray, np.ndarray]:
        images, masks = [], []
        for _ in range(n):
            pool = self.without if rng.random() < self.empty_fraction else self.with_bone
            c, z = pool[int(rng.integers(len(pool)))]
            case = self.cases[c]
            img = case.image[context_indices(np.array([z]), self.offsets[c], 0, case.image.shape[0])[0]]
            msk = case.mask[z]
            if msk.max() > 0.5:
                ys, xs = np.nonzero(msk > 0.5)
                cy, cx = int(ys.mean()), int(xs.mean())
            else:
                cy = cx = None
            start = (_random_start(msk.shape[0], self.patch[0], rng, cy), _random_start(msk.shape[1], self.patch[1], rng, cx))
            # padded like the pipeline pads (density 0, soft tissue), not with the slice's noisy minimum
            images.append(_crop_or_pad(img, (img.shape[0], *self.patch), (0, *start), 0.0))
            masks.append(_crop_or_pad(msk, self.patch, start, 0.0))
        return np.stack(images), np.stack(masks)[:, None]


class _Sampler3D:
    def __init__(self, cases: list[PreparedCase], patch):
        self.cases, self.patch = cases, tuple(patch)

    def __len__(self):
        return len(self.cases)

    def batch(self, n: int, rng):
        images, masks = [], []
        for _ in range(n):
            case = self.cases[int(rng.integers(len(self.cases)))]
            zyx = np.argwhere(case.mask > 0.5)
            centre = zyx[int(rng.integers(len(zyx)))] if len(zyx) else [None] * 3
            start = tuple(_random_start(n_, s, rng, c) for n_, s, c in zip(case.image.shape, self.patch, centre))
            images.append(_crop_or_pad(case.image, self.patch, start, float(case.image.min())))
            masks.append(_crop_or_pad(case.mask, self.patch, start, 0.0))
        return np.stack(images)[:, None], np.stack(masks)[:, None]


# -- validation ---------------------------------------------------------------------------------------


@torch.no_grad()
def predict_prepared(model, config: ModelConfig, case: PreparedCase, device, batch: int = 16) -> np.ndarray:
    """Probabilities on the working grid of a prepared case (as the pipeline would infer)."""
    model.eval()
    multiple = size_multiple(model, config.architecture)
    pad_value = (0.0 - config.mean) / config.std
    image = (case.image - config.mean) / config.std
    dims = network_dims(config.architecture)
    axes = (1, 2) if dims == 2 else (0, 1, 2)
    pads = [(0, 0)] * 3
    for ax in axes:
        pads[ax] = (0, (-image.shape[ax]) % multiple)
    padded = np.pad(image, pads, constant_values=pad_value).astype(np.float32)
    z, h, w = image.shape
    if dims == 2:
        out = []
        offsets = context_offsets(config.context_mm, case.spacing_z)
        for start in range(0, z, batch):
            index = context_indices(np.arange(start, min(z, start + batch)), offsets, 0, z)
            logits = model(torch.from_numpy(padded[index]).to(device))
            out.append(torch.sigmoid(logits.float())[:, 0, :h, :w].cpu().numpy())
        return np.concatenate(out)
    logits = model(torch.from_numpy(padded)[None, None].to(device))
    return torch.sigmoid(logits.float())[0, 0, :z, :h, :w].cpu().numpy()


def validate(model, config, cases, device) -> dict[str, float]:
    """Dice, IoU and accuracy of the mask the pipeline would keep (threshold, per-slice hole filling,
    largest component) on the working grid; AUC of the raw probabilities."""
    from . import postprocess as post

    probs, kept, truths = [], [], []
    for case in cases:
        prob = predict_prepared(model, config, case, device)
        mask = post.keep_largest_component(post.fill_holes_per_slice(prob >= config.threshold))
        probs.append(prob.ravel())
        kept.append(mask.ravel())
        truths.append(case.mask.ravel())
    metrics = segmentation_metrics(np.concatenate(probs), np.concatenate(truths), config.threshold)
    pipeline = segmentation_metrics(np.concatenate(kept).astype(np.float32), np.concatenate(truths), 0.5)
    return {**metrics, **{k: pipeline[k] for k in ("dice", "iou", "accuracy")}}


# -- resume state (safetensors + JSON, no pickle) --------------------------------------------------------


def _save_resume(out_dir: Path, optimizer, state: dict) -> None:
    from safetensors.torch import save_file

    tensors = {}
    meta = {"param_groups": optimizer.state_dict()["param_groups"], **state}
    for index, values in optimizer.state_dict()["state"].items():
        for key, value in values.items():
            tensors[f"{index}.{key}"] = torch.as_tensor(value).detach().cpu().contiguous()
    with atomic_path(out_dir / "resume.safetensors") as tmp:
        save_file(tensors, str(tmp))
    write_text_atomic(out_dir / "resume.json", json.dumps(meta, indent=2))


def _load_resume(out_dir: Path, optimizer) -> dict:
    from safetensors.torch import load_file

    meta_path, tensor_path = out_dir / "resume.json", out_dir / "resume.safetensors"
    if not meta_path.is_file() or not tensor_path.is_file():
        raise VbmdError("nothing to resume: no resume.json/resume.safetensors", out_dir)
    try:
        meta = json.loads(meta_path.read_text())
        tensors = load_file(str(tensor_path))
    except Exception as exc:
        raise VbmdError(f"resume state is unreadable ({exc})", out_dir) from None
    state: dict = {}
    for name, value in tensors.items():
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": meta.pop("param_groups")})
    return meta


def _upgrade_metrics_header(path: Path) -> None:
    """A run resumed from an older version: its metrics.csv gets today's columns (missing values empty)."""
    with open(path, newline="") as fh:
        reader = csv.DictReader(fh)
        rows = list(reader)
    if reader.fieldnames == METRIC_COLUMNS:
        return
    with atomic_path(path) as tmp:
        with open(tmp, "w", newline="") as fh:
            writer = csv.DictWriter(fh, fieldnames=METRIC_COLUMNS, extrasaction="ignore", restval="")
            writer.writeheader()
            writer.writerows(rows)


def _refresh_batch_norm(network, sampler, batch_size, augment, settings, config, device, epoch, batches: int = 20):
    """Recompute batch-norm running statistics of averaged weights on training batches (no-op without BN)."""
    from torch.optim.swa_utils import update_bn

    rng = np.random.default_rng(settings.seed * 100_003 + epoch + 7_919)

    def inputs():
        for _ in range(batches):
            images, masks = sampler.batch(batch_size, rng)
            images = torch.from_numpy(images)
            if settings.augment:
                images, _ = augment(images, torch.from_numpy(masks), rng, settings.flips)
            yield (images - config.mean) / config.std

    update_bn(inputs(), network, device)  # resets the statistics, averages them equally, restores the mode


# -- the loop -------------------------------------------------------------------------------------------


def _prepare_split(pairs, spacing, dims, margin, progress_desc, show_progress) -> list[PreparedCase]:
    from tqdm import tqdm

    cases = []
    for pair in tqdm(pairs, desc=progress_desc, disable=not show_progress, leave=False):
        image, inside = load_pair(pair)
        cases.append(prepare_case(image, inside, spacing, dims, margin, pair.case))
    return cases


def train(
    data: str | Path,
    out_dir: str | Path,
    settings: TrainSettings,
    device: str = "auto",
    resume: bool = False,
    show_progress: bool = True,
    log: Callable[[str], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> dict:
    """Train; returns a summary (best epoch and its validation metrics, paths)."""
    from tqdm import tqdm

    check_train_settings(settings, out_dir)  # every setting within bounds before anything is read or written
    out_dir = Path(out_dir)
    torch_device = resolve_device(device)
    seed_everything(settings.seed)
    init_model, init_config = (None, None)
    if settings.init:
        init_model, init_config = load_checkpoint(settings.init, device="cpu")
        settings = dataclasses.replace(settings, architecture=init_config.architecture, kwargs=init_config.kwargs,
                                       spacing_mm=init_config.spacing_mm, crop_margin_mm=init_config.crop_margin_mm,
                                       context_mm=init_config.context_mm)
    if settings.loss not in LOSSES:
        raise VbmdError(f"unknown loss {settings.loss!r}; use {' or '.join(LOSSES)}")
    if settings.epochs < 1:
        raise VbmdError(f"epochs must be at least 1, got {settings.epochs}")
    for what, seed in (("seed", settings.seed), ("split_seed", settings.split_seed)):
        if seed is not None and seed < 0:
            raise VbmdError(f"{what} must be a whole number >= 0, got {seed}")
    if settings.average_from is not None and not 1 <= settings.average_from <= settings.epochs:
        raise VbmdError(f"average_from must be an epoch between 1 and {settings.epochs}, got {settings.average_from}")
    if settings.flips not in FLIPS:
        raise VbmdError(f"unknown flips setting {settings.flips!r}; use {', '.join(FLIPS)}")
    if settings.lr_schedule not in LR_SCHEDULES:
        raise VbmdError(f"unknown learning-rate schedule {settings.lr_schedule!r}; use {' or '.join(LR_SCHEDULES)}")
    if not 0 <= settings.warmup_epochs < settings.epochs:
        raise VbmdError(f"warmup_epochs must be between 0 and {settings.epochs - 1} (fewer than the epochs), "
                        f"got {settings.warmup_epochs}")
    if settings.grad_clip is not None and not (math.isfinite(settings.grad_clip) and settings.grad_clip > 0):
        raise VbmdError(f"grad_clip must be a positive number, got {settings.grad_clip}")
    dims = network_dims(settings.architecture)
    context_mm = tuple(float(c) for c in settings.context_mm)
    if len(context_mm) > 1 and "in_channels" not in settings.kwargs:
        settings = dataclasses.replace(settings, kwargs={**settings.kwargs, "in_channels": len(context_mm)})
    check_context(settings.architecture, context_mm, settings.kwargs)
    defaults = STUDY_DEFAULTS[dims]
    lr = settings.lr if settings.lr is not None else defaults["lr"]
    batch_size = settings.batch_size or defaults["batch_size"]
    patch = tuple(settings.patch)
    if len(patch) != dims:
        raise VbmdError(f"patch must have {dims} sizes for a {dims}D network, got {patch}")

    pairs = find_pairs(data)
    out_dir.mkdir(parents=True, exist_ok=True)  # only once the settings and the data are known to be usable
    split_path = out_dir / "split.json"
    if resume and split_path.is_file():
        recorded = json.loads(split_path.read_text())
        by_case = {p.case: p for p in pairs}
        missing = [c for name in ("train", "val") for c in recorded[name] if c not in by_case]
        if missing:
            raise VbmdError(f"cannot resume: cases {missing[:3]} of the recorded split are gone", split_path)
        split = {name: [by_case[c] for c in recorded[name] if c in by_case] for name in ("train", "val", "test")}
    else:
        split_seed = settings.seed if settings.split_seed is None else settings.split_seed
        split = split_by_patient(pairs, split_seed)
        write_text_atomic(split_path, json.dumps({
            "seed": split_seed,
            "fractions": [0.7, 0.2, 0.1],
            **{name: [p.case for p in members] for name, members in split.items()},
            "patients": {name: sorted({p.patient for p in members}) for name, members in split.items()},
        }, indent=2) + "\n")
    # the test split is written down and never read
    train_cases = _prepare_split(split["train"], settings.spacing_mm, dims, settings.crop_margin_mm, "prepare train", show_progress)
    val_cases = _prepare_split(split["val"], settings.spacing_mm, dims, settings.crop_margin_mm, "prepare val", show_progress)

    if init_config is not None:
        mean, std = init_config.mean, init_config.std
    else:
        values = np.concatenate([c.image.ravel() for c in train_cases])
        mean, std = float(values.mean()), float(values.std()) or 1.0
    config = ModelConfig(
        architecture=settings.architecture,
        kwargs=architecture_kwargs(settings.kwargs),
        spacing_mm=tuple(float(s) for s in settings.spacing_mm),
        mean=mean,
        std=std,
        threshold=settings.threshold,
        crop_margin_mm=settings.crop_margin_mm,
        context_mm=context_mm,
        name=settings.name,
        training={
            "data": str(data),
            "n_cases": {name: len(members) for name, members in split.items()},
            "init": settings.init,
            "settings": {k: v for k, v in dataclasses.asdict(settings).items() if k not in ("init",)},
            "lr": lr,
            "batch_size": batch_size,
            "loss": settings.loss,
            "optimizer": "adam",
            "lr_schedule": settings.lr_schedule,
            "warmup_epochs": settings.warmup_epochs,
            "grad_clip": settings.grad_clip,
        },
    )
    build_kwargs = dict(settings.kwargs)
    if settings.architecture == "unet2d_resnet34":
        build_kwargs.update(encoder_weights_path=settings.encoder_weights_path, imagenet_online=settings.imagenet_online)
    model = build_network(settings.architecture, **build_kwargs)
    if init_model is not None:
        model.load_state_dict(init_model.state_dict())
    model.to(torch_device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)

    start_epoch, best = 1, {"epoch": 0, "val_dice": -1.0}
    metrics_path = out_dir / "metrics.csv"
    if resume:
        missing = [n for n in ("last.json", "last.safetensors", "resume.json", "resume.safetensors") if not (out_dir / n).is_file()]
        if missing:
            raise VbmdError(f"nothing to resume: {', '.join(missing)} missing", out_dir)
        last_model, _ = load_checkpoint(out_dir / "last.json", device="cpu")
        model.load_state_dict(last_model.state_dict())
        meta = _load_resume(out_dir, optimizer)
        start_epoch, best = int(meta["epoch"]) + 1, meta["best"]
        config.mean, config.std = meta["mean"], meta["std"]
    elif metrics_path.exists():
        metrics_path.unlink()
    if not metrics_path.exists():
        with open(metrics_path, "w", newline="") as fh:
            csv.writer(fh).writerow(METRIC_COLUMNS)
    else:
        _upgrade_metrics_header(metrics_path)

    averaged = None
    if settings.average_from is not None:
        from torch.optim.swa_utils import AveragedModel

        averaged = AveragedModel(model)
        n_averaged = int(meta.get("n_averaged", 0)) if resume else 0
        if n_averaged:
            if not (out_dir / "average.json").is_file():
                raise VbmdError("cannot resume: average.json/average.safetensors missing", out_dir)
            average_model, _ = load_checkpoint(out_dir / "average.json", device="cpu")
            averaged.module.load_state_dict(average_model.state_dict())
            averaged.n_averaged.fill_(n_averaged)
    sampler = (_Sampler2D(train_cases, patch, settings.empty_slice_fraction, context_mm) if dims == 2
               else _Sampler3D(train_cases, patch))
    steps = settings.steps_per_epoch or max(1, len(sampler) // batch_size)
    started = time.monotonic()
    augment = _augment_2d if dims == 2 else _augment_3d
    epoch = start_epoch - 1
    for epoch in range(start_epoch, settings.epochs + 1):
        epoch_start = time.monotonic()
        seed_everything(settings.seed * 100_003 + epoch)  # resumable: each epoch's randomness from its number
        rng = np.random.default_rng(settings.seed * 100_003 + epoch)
        model.train()
        current_lr = epoch_lr(settings, lr, epoch)
        for group in optimizer.param_groups:
            group["lr"] = current_lr
        losses, grad_norms = [], []
        bar = tqdm(range(steps), desc=f"epoch {epoch}/{settings.epochs}", disable=not show_progress, leave=False)
        for _ in bar:
            if cancel is not None and cancel():
                raise CancelledError("training cancelled")
            images, masks = sampler.batch(batch_size, rng)
            images, masks = torch.from_numpy(images), torch.from_numpy(masks)
            if settings.augment:
                images, masks = augment(images, masks, rng, settings.flips)
            images = ((images - config.mean) / config.std).to(torch_device)
            masks = masks.to(torch_device)
            optimizer.zero_grad(set_to_none=True)
            loss = training_loss(settings.loss, model(images), masks)
            if not torch.isfinite(loss):
                kept = "; last.json holds the last finished epoch" if epoch > 1 else ""
                raise VbmdError(f"training diverged: the loss is not finite in epoch {epoch} (lower the learning "
                                f"rate or set a gradient clip){kept}", out_dir)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip or math.inf)
            optimizer.step()
            losses.append(float(loss.detach()))
            grad_norms.append(float(grad_norm))
            bar.set_postfix(loss=f"{np.mean(losses[-20:]):.4f}")
        evaluated = model
        if averaged is not None and epoch >= settings.average_from:
            averaged.update_parameters(model)
            _refresh_batch_norm(averaged.module, sampler, batch_size, augment, settings, config, torch_device, epoch)
            save_checkpoint(out_dir / "average", averaged.module, config)
            evaluated = averaged.module
        metrics = validate(evaluated, config, val_cases, torch_device)
        row = [epoch, float(np.mean(losses)), metrics["dice"], metrics["iou"], metrics["auc"], metrics["accuracy"],
               current_lr, time.monotonic() - epoch_start, float(np.median(grad_norms))]
        with open(metrics_path, "a", newline="") as fh:
            csv.writer(fh).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        if log:
            log(f"epoch {epoch}: loss {row[1]:.4f}, val Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f}, "
                f"AUC {metrics['auc']:.4f}, accuracy {metrics['accuracy']:.5f}, lr {current_lr:.3g}, "
                f"median gradient norm {row[8]:.3g} ({row[7]:.0f} s)")
        config.training["epoch"] = epoch
        config.training["val_metrics"] = metrics
        if metrics["dice"] > best["val_dice"]:
            best = {"epoch": epoch, "val_dice": metrics["dice"], "metrics": metrics}
            save_checkpoint(out_dir / "best", evaluated, config)
        save_checkpoint(out_dir / "last", model, config)
        _save_resume(out_dir, optimizer, {"epoch": epoch, "best": best, "mean": config.mean, "std": config.std,
                                          "n_averaged": int(averaged.n_averaged) if averaged is not None else 0})
        if settings.max_minutes is not None and (time.monotonic() - started) / 60 >= settings.max_minutes:
            if log:
                log(f"stopping after epoch {epoch}: the time budget of {settings.max_minutes} min is spent")
            break
    return {
        "out_dir": str(out_dir),
        "best_epoch": best["epoch"],
        "best_val_dice": best["val_dice"],
        "best_metrics": best.get("metrics"),
        "last_epoch": epoch,
        "checkpoint": str(out_dir / "best.json"),
        "split": str(split_path),
        "metrics_csv": str(metrics_path),
        "n_cases": {name: len(members) for name, members in split.items()},
        "device": str(torch_device),
    }
