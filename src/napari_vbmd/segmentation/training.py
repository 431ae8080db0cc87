"""Training and fine-tuning (``vbmd train``).

Pairs are split by patient 70/20/10 with a seed (``split.json``; the test split is never read
during training), prepared like the inference pipeline prepares a scan, and a network is trained
with the Dice loss and Adam (the study's settings by default: 2D lr 1e-5 batch 4, 3D lr 1e-4
batch 1). Augmentation: intensity scale/shift/noise, small rotations, directional blur (like
motion) and, on request, flips. Flips are off by default: the pipeline turns every hand into a right
hand, and a mirror flip turns it back into a left one, where MC3 sits where MC2 should be; a network
trained with mirror flips cannot tell the two by position (the first default model marked MC3 on
phantoms for this reason). ``context_mm`` (2D) stacks the slices at those offsets (mm along z) as
input channels, so the network can see which side of the joint a slice lies on. Every epoch (or
every ``validate_every``-th, the run's last and the one a time budget ends): validation
Dice/IoU/AUC/accuracy to ``metrics.csv``, of the mask ``segment()`` would keep on each validation
scan (:mod:`.validation`); the best validated checkpoint by validation Dice is
``best.json``/``best.safetensors``, the latest ``last.*`` plus ``resume.*`` (optimizer state in
safetensors, never pickle) so ``--resume`` continues where it stopped. ``stop_after`` ends a run at
an epoch while the learning-rate schedule stays that of ``epochs``.

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
import functools
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

from .._atomic import write_text_atomic
from ..errors import CancelledError, VbmdError
from .checkpoint import ModelConfig, check_context, load_checkpoint, save_checkpoint
from .datasets import PreparedCase, find_pairs, load_pair, prepare_case, split_by_patient
from .models import LoadedModel, resolve_device
from .architectures import architecture_kwargs, network_dims
from .networks import build_network
from .sampling import (  # noqa: F401 (tests)
    APPEARANCES, FLIPS, _augment_2d, _augment_3d, _flip_axes, _Sampler2D, _Sampler3D,
)
from .settings_check import check_train_settings
from .training_state import (METRIC_COLUMNS, _load_resume, _refresh_batch_norm, _save_resume, _upgrade_metrics_header,
                             training_environment)
from .validation import ValidationCase, validate, validation_case

STUDY_DEFAULTS = {2: {"lr": 1e-5, "batch_size": 4}, 3: {"lr": 1e-4, "batch_size": 1}}
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
    # "broad": also blur, texture, contrast, bias-field and grain changes (2D; sampling.py); "broad-half": on half
    # the samples
    appearance: str = "standard"
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
    validate_every: int = 1  # validate every N-th epoch (and the last one): validation is a full pipeline per case
    stop_after: int | None = None  # end the run after this epoch (validated), the schedule still that of ``epochs``


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


# -- the loop -------------------------------------------------------------------------------------------


def _prepare_split(pairs, spacing, dims, margin, progress_desc, show_progress) -> list[PreparedCase]:
    from tqdm import tqdm

    cases = []
    for pair in tqdm(pairs, desc=progress_desc, disable=not show_progress, leave=False):
        image, inside = load_pair(pair)
        cases.append(prepare_case(image, inside, spacing, dims, margin, pair.case))
    return cases


def _validation_split(pairs, margin, show_progress) -> list[ValidationCase]:
    from tqdm import tqdm

    cases = []
    for pair in tqdm(pairs, desc="prepare val", disable=not show_progress, leave=False):
        image, inside = load_pair(pair)
        cases.append(validation_case(image, inside, margin, pair.case))
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
    if settings.lr_schedule not in LR_SCHEDULES:
        raise VbmdError(f"unknown learning-rate schedule {settings.lr_schedule!r}; use {' or '.join(LR_SCHEDULES)}")
    if not 0 <= settings.warmup_epochs < settings.epochs:
        raise VbmdError(f"warmup_epochs must be between 0 and {settings.epochs - 1} (fewer than the epochs), "
                        f"got {settings.warmup_epochs}")
    if settings.grad_clip is not None and not (math.isfinite(settings.grad_clip) and settings.grad_clip > 0):
        raise VbmdError(f"grad_clip must be a positive number, got {settings.grad_clip}")
    dims = network_dims(settings.architecture)  # with --init the checkpoint's, which check_train_settings did not see
    if settings.appearance != "standard" and dims != 2:
        raise VbmdError(f"appearance augmentation {settings.appearance!r} is for 2D networks; "
                        f"{settings.architecture} is 3D")
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
    val_cases = _validation_split(split["val"], settings.crop_margin_mm, show_progress)

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
            "environment": training_environment(torch_device),
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

    def spent() -> bool:
        return settings.max_minutes is not None and (time.monotonic() - started) / 60 >= settings.max_minutes

    augment = functools.partial(_augment_2d if dims == 2 else _augment_3d, appearance=settings.appearance,
                                pixel_mm=float(config.spacing_mm[-1]))
    epoch = start_epoch - 1
    final_epoch = settings.epochs if settings.stop_after is None else min(settings.epochs, settings.stop_after)
    for epoch in range(start_epoch, final_epoch + 1):
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
        out_of_time = spent()  # an epoch that ends the run is validated, scheduled or not
        validating = epoch % settings.validate_every == 0 or epoch == final_epoch or out_of_time
        metrics = (validate(LoadedModel(evaluated, config, settings.name, torch_device, "training"), val_cases)
                   if validating else None)
        scores = [metrics[k] for k in ("dice", "iou", "auc", "accuracy")] if metrics else [""] * 4
        row = [epoch, float(np.mean(losses)), *scores, current_lr, time.monotonic() - epoch_start,
               float(np.median(grad_norms))]
        with open(metrics_path, "a", newline="") as fh:
            csv.writer(fh).writerow([f"{v:.6g}" if isinstance(v, float) else v for v in row])
        if log:
            scored = (f"val Dice {metrics['dice']:.4f}, IoU {metrics['iou']:.4f}, AUC {metrics['auc']:.4f}, "
                      f"accuracy {metrics['accuracy']:.5f}" if metrics else "not validated")
            log(f"epoch {epoch}: loss {row[1]:.4f}, {scored}, lr {current_lr:.3g}, "
                f"median gradient norm {row[8]:.3g} ({row[7]:.0f} s)")
        config.training["epoch"] = epoch
        config.training["val_metrics"] = metrics  # None in last.* after an epoch that was not validated
        if metrics is not None and metrics["dice"] > best["val_dice"]:
            best = {"epoch": epoch, "val_dice": metrics["dice"], "metrics": metrics}
            save_checkpoint(out_dir / "best", evaluated, config)
        save_checkpoint(out_dir / "last", model, config)
        _save_resume(out_dir, optimizer, {"epoch": epoch, "best": best, "mean": config.mean, "std": config.std,
                                          "n_averaged": int(averaged.n_averaged) if averaged is not None else 0})
        if out_of_time or (validating and spent()):
            if log:
                log(f"stopping after epoch {epoch}: the time budget of {settings.max_minutes} min is spent")
            break
    onnx_path, onnx_note = None, "no best checkpoint"
    if (out_dir / "best.json").is_file():
        from .onnx_export import export_quietly

        onnx_path, onnx_note = export_quietly(out_dir / "best.json")  # what runs it on a CPU
        if log:
            log(f"ONNX export: {onnx_path or 'none'} ({onnx_note})")
    return {
        "out_dir": str(out_dir),
        "best_epoch": best["epoch"],
        "onnx": onnx_path,
        "onnx_note": onnx_note,
        "best_val_dice": best["val_dice"],
        "best_metrics": best.get("metrics"),
        "last_epoch": epoch,
        "checkpoint": str(out_dir / "best.json"),
        "split": str(split_path),
        "metrics_csv": str(metrics_path),
        "n_cases": {name: len(members) for name, members in split.items()},
        "device": str(torch_device),
    }
