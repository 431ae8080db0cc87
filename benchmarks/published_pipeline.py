"""The published pipeline's shape (Folle et al. 2021), re-implemented for side-by-side timing.

    whole scan -> densities -> (left hands mirrored) -> z-score -> resize to 80 x 512 x 512
    -> one forward pass (2D: the 80 slices in batches; 3D: the whole volume at once)
    -> probabilities resized back to the full grid -> threshold over the whole field of view

It takes the same checkpoints as ``segment()`` so the two shapes can run the same network. Two
choices make this baseline *faster* than the published code, never slower: resizing uses torch's
``F.interpolate`` (the study resized with image libraries on the CPU), and the known defects are
left out (the left hand is mirrored back, not rotated by 180°). It is a benchmark baseline, not
a method offered to users: a model trained on one grid gives wrong masks on the 512 × 512 × 80 grid
of another field of view, which is why napari-vbmd works on a grid of fixed physical spacing.
"""
from __future__ import annotations

import time

import numpy as np
import torch
import torch.nn.functional as F

PUBLISHED_GRID = (80, 512, 512)  # (slices, rows, columns), as in the paper's pre-processing


def _resize(volume: torch.Tensor, shape: tuple[int, int, int]) -> torch.Tensor:
    return F.interpolate(volume, size=tuple(shape), mode="trilinear", align_corners=False)


@torch.inference_mode()
def published_segment(scan, loaded, hand: str = "right", batch_size: int = 8) -> tuple[np.ndarray, dict]:
    """(mask on the scan's grid as uint8 0/1, timings) of the published pipeline's shape."""
    from napari_vbmd.segmentation.preprocess import context_indices, context_offsets, density_block

    config, net, device = loaded.config, loaded.network, loaded.device
    timings = {"preprocess": 0.0, "inference": 0.0, "postprocess": 0.0}
    t = time.perf_counter()
    density = density_block(scan, (slice(None),) * 3)
    if hand == "left":
        density = density[..., ::-1]
    density = (density - config.mean) / config.std
    small = _resize(torch.from_numpy(np.ascontiguousarray(density, dtype=np.float32))[None, None], PUBLISHED_GRID)
    del density
    timings["preprocess"] = time.perf_counter() - t

    t = time.perf_counter()
    if config.dims == 2:
        slices = small[0, 0]
        prob = torch.empty_like(slices)
        # a network with slice context gets its neighbours at the same distances in mm on the 80-slice grid
        offsets = context_offsets(config.context_mm, scan.shape[0] * scan.spacing[0] / slices.shape[0])
        for start in range(0, slices.shape[0], batch_size):
            index = context_indices(np.arange(start, min(slices.shape[0], start + batch_size)), offsets, 0, slices.shape[0])
            batch = slices[torch.from_numpy(index)].to(device)
            prob[start : start + batch_size] = torch.sigmoid(net(batch).float())[:, 0].cpu()
        prob = prob[None, None]
    else:
        prob = torch.sigmoid(net(small.to(device)).float()).cpu()
    timings["inference"] = time.perf_counter() - t

    t = time.perf_counter()
    full = _resize(prob, scan.shape)[0, 0]
    mask = (full >= config.threshold).numpy()
    del full
    if hand == "left":
        mask = mask[..., ::-1]
    mask = np.ascontiguousarray(mask, dtype=np.uint8)
    timings["postprocess"] = time.perf_counter() - t
    return mask, timings


def published_ceiling(truth: np.ndarray) -> np.ndarray:
    """The true mask taken through the published grid and back: the best any network could give
    on that grid (resolution ceiling), thresholded at 0.5."""
    volume = torch.from_numpy(truth.astype(np.float32))[None, None]
    back = _resize(_resize(volume, PUBLISHED_GRID), truth.shape)[0, 0]
    return (back >= 0.5).numpy()


def working_grid_ceiling(truth: np.ndarray, spacing_yx: tuple[float, float], working_mm: float, box) -> np.ndarray:
    """The same for napari-vbmd's 2D shape: the bone box of each slice to ``working_mm`` and back."""
    from napari_vbmd.segmentation.preprocess import resample_slices, working_size

    crop = truth[box.slices].astype(np.float32)
    h, w = crop.shape[1:]
    wh, ww = working_size(h, spacing_yx[0], working_mm), working_size(w, spacing_yx[1], working_mm)
    back = resample_slices(resample_slices(crop, (wh, ww)), (h, w))
    out = np.zeros(truth.shape, dtype=bool)
    out[box.slices] = back >= 0.5
    return out


# -- the study's cheapest configuration as a whole process (the speed reference of issue 22) ----------

#: the study's 3D U-Net: depth 5, 2 base channels, instance norm, LeakyReLU (networks.UNet3D)
STUDY_UNET3D = {"base": 2, "depth": 5}


class _Reference:
    """What ``published_segment`` needs of a loaded model, without napari-vbmd's model registry."""

    def __init__(self, network, device):
        from types import SimpleNamespace

        # normalisation of the phantoms' densities (mg HA/cm3), as a trained network would store it
        self.config = SimpleNamespace(mean=52.0, std=220.0, threshold=0.5, dims=3, context_mm=(0.0,))
        self.network, self.device = network, device


def main(argv=None) -> int:
    """``python benchmarks/published_pipeline.py IMAGE -o MASK``: read, segment with the study's 3D
    U-Net (random weights, seeded: the time does not depend on them) in the published shape, write
    the mask as the same reader/writer of napari-vbmd would; prints the stage timings as JSON."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__.splitlines()[0])
    parser.add_argument("image")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("--threads", type=int)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    if args.threads:
        torch.set_num_threads(args.threads)
    from napari_vbmd.io import read_scan, write_mask
    from napari_vbmd.segmentation.networks import UNet3D

    timings = {"start": time.perf_counter() - started}
    t = time.perf_counter()
    torch.manual_seed(0)
    network = UNet3D(**STUDY_UNET3D).eval()
    timings["model"] = time.perf_counter() - t
    t = time.perf_counter()
    scan = read_scan(args.image)
    timings["read"] = time.perf_counter() - t
    mask, stages = published_segment(scan, _Reference(network, torch.device("cpu")), hand=scan.hand or "right")
    timings.update(stages)
    t = time.perf_counter()
    write_mask(args.output, scan.with_data(mask, kind="mask", unit="unknown", calibration=scan.calibration), parent=scan)
    timings["write"] = time.perf_counter() - t
    timings["total"] = time.perf_counter() - started
    print(json.dumps({"timings_s": timings}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
