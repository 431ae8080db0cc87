"""A network's probabilities on a working grid (:class:`~.stages.Working`): z-score with the
checkpoint's statistics, pad to the network's size multiple, batches of slices with their slice
context (2D) or one pass (3D), progress after each batch and a cancel check between batches.

The loop is one for both runtimes; only the forward pass differs: torch (any device, mixed precision
on GPU) or ONNX Runtime on the CPU (:mod:`.onnx_runtime`), which a model answers as
``model.forward(batch)`` -> probabilities."""
from __future__ import annotations

import contextlib

import numpy as np

from .models import check_cancel
from .preprocess import context_indices, context_offsets, pad_to_multiple


@contextlib.contextmanager
def torch_threads(threads: int | None):
    """Run with ``threads`` CPU threads for torch, restoring the previous number afterwards."""
    if not threads:
        yield
        return
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(int(threads))
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def torch_probability(network, device, batch: np.ndarray) -> np.ndarray:
    """float32 probabilities of a torch network for a z-scored batch (b, channels, ...): (b, ...)."""
    import torch

    autocast = (torch.autocast("cuda", dtype=torch.float16) if device.type == "cuda"
                else contextlib.nullcontext())
    with torch.inference_mode(), autocast:
        logits = network(torch.from_numpy(np.ascontiguousarray(batch)).to(device))
    return torch.sigmoid(logits.float())[:, 0].cpu().numpy()


def predict_network(model, work, batch_size: int | None = None, progress=None, cancel=None) -> np.ndarray:
    """float32 probabilities (z, h, w) on ``work``'s grid for the box's slices."""
    config = model.config
    multiple = model.size_multiple
    pad_value = (0.0 - config.mean) / config.std
    wh, ww = work.hw
    if work.dims == 3:
        check_cancel(cancel)
        volume = (work.data - config.mean) / config.std
        volume, _ = pad_to_multiple(volume, multiple, axes=(0, 1, 2), value=pad_value)
        probability = model.forward(volume[None, None].astype(np.float32))
        if progress:
            progress(1, 2, "inferred")
        return probability[0, : work.data.shape[0], :wh, :ww]

    normalised = work.data - config.mean
    normalised /= config.std
    box = work.box
    nz = box.z1 - box.z0
    offsets = context_offsets(config.context_mm, work.spacing[0])
    lo, hi = work.context
    if batch_size is None:
        batch_size = model.default_batch_size
    out = np.empty((nz, wh, ww), dtype=np.float32)
    starts = list(range(0, nz, batch_size))
    for step, start in enumerate(starts, 1):
        check_cancel(cancel)
        stop = min(nz, start + batch_size)
        index = context_indices(np.arange(box.z0 + start, box.z0 + stop), offsets, lo, hi) - work.first
        batch = normalised[index]  # (b, channels, h, w)
        batch, _ = pad_to_multiple(batch, multiple, axes=(2, 3), value=pad_value)
        out[start:stop] = model.forward(batch.astype(np.float32, copy=False))[:, :wh, :ww]
        if progress:
            progress(step, len(starts) + 1, f"slices {box.z0 + start}-{box.z0 + stop - 1}")
    return out
