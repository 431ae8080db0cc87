"""Export a checkpoint's network to ONNX for :mod:`.onnx_runtime` (needs torch and the ``onnx`` package).

    python -m napari_vbmd.segmentation.onnx_export CHECKPOINT [-o NAME.onnx]

Writes ``NAME.onnx`` beside ``NAME.safetensors``: the network followed by its sigmoid (the graph
answers probabilities), batch and spatial sizes free, and in its metadata the sha256 of the weights
file it came from, the architecture and the size multiple. The export is checked before it is kept:
ONNX Runtime and torch must give the same probabilities (within ``TOLERANCE``) on a z-scored batch
of the network's input size, else nothing is written.
"""
from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

import numpy as np

from .._atomic import atomic_path
from ..errors import VbmdError
from ..util import sha256_file
from . import onnx_runtime as ort_

#: largest difference of probability allowed between ONNX Runtime and torch on the check batch
TOLERANCE = 1e-4
OPSET = 17


def export_onnx(checkpoint: str | Path, out: str | Path | None = None, seed: int = 0) -> tuple[Path, float]:
    """Write the ONNX export of ``checkpoint`` (default: beside its weights); (path, largest
    probability difference from torch on the check batch)."""
    import torch

    try:
        import onnx
    except ImportError:
        raise VbmdError("exporting to ONNX needs the onnx package (pip install onnx)") from None
    from .checkpoint import checkpoint_paths, load_checkpoint
    from .networks import size_multiple

    config_path, weights_path = checkpoint_paths(checkpoint)
    network, config = load_checkpoint(config_path, device="cpu")
    out = Path(out) if out else ort_.onnx_path(weights_path)
    multiple = size_multiple(network, config.architecture)

    class Probability(torch.nn.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        def forward(self, x):
            return torch.sigmoid(self.net(x).float())

    wrapper = Probability(network).eval()
    channels = len(config.context_mm) if config.dims == 2 else 1
    spatial = (4 * multiple, 5 * multiple) if config.dims == 2 else (2 * multiple, 3 * multiple, 3 * multiple)
    rng = np.random.default_rng(seed)
    example = torch.from_numpy(rng.normal(size=(2, channels, *spatial)).astype(np.float32))
    names = {0: "batch", 2: "d2", 3: "d3", 4: "d4"}
    axes = {k: v for k, v in names.items() if k < 2 + config.dims}
    with atomic_path(out, protect=(config_path, weights_path)) as tmp:
        with torch.no_grad(), warnings.catch_warnings():
            # the TorchScript exporter is deprecated (the newer one needs onnxscript) and notes that
            # instance norm uses each input's statistics, as it should here; the check below decides
            warnings.simplefilter("ignore")
            torch.onnx.export(wrapper, (example,), str(tmp), input_names=["x"], output_names=["probability"],
                              dynamic_axes={"x": axes, "probability": axes}, opset_version=OPSET, dynamo=False)
            expected = wrapper(example).numpy()
        model = onnx.load(str(tmp))
        meta = {ort_.META_FORMAT: f"{ort_.FORMAT} {ort_.FORMAT_VERSION}",
                ort_.META_WEIGHTS_SHA256: sha256_file(weights_path),
                ort_.META_ARCHITECTURE: config.architecture,
                ort_.META_SIZE_MULTIPLE: str(multiple)}
        for key, value in meta.items():
            entry = model.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(model, str(tmp))
        session = ort_.open_session(Path(tmp))
        got = session.run(None, {"x": example.numpy()})[0]
        difference = float(np.abs(got - expected).max())
        if not difference <= TOLERANCE:
            raise VbmdError(f"the ONNX export answers differently from torch (largest probability difference "
                            f"{difference:.2g} > {TOLERANCE}); nothing written", config_path)
    return out, difference


def export_quietly(checkpoint: str | Path, out: str | Path | None = None) -> tuple[str | None, str]:
    """(path of the ONNX export written, "") or (None, why not) - for commands that make a checkpoint
    (`vbmd train`, `vbmd ensemble`): without an export the model still runs, in torch."""
    try:
        path, difference = export_onnx(checkpoint, out)
    except VbmdError as exc:
        return None, exc.problem
    except Exception as exc:  # noqa: BLE001 - an exporter failure must not lose the trained model
        return None, f"the ONNX exporter failed ({type(exc).__name__}: {exc})"
    return str(path), f"largest probability difference from torch {difference:.2g}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint")
    parser.add_argument("-o", "--output", help="the ONNX file (default: NAME.onnx beside the weights)")
    args = parser.parse_args(argv)
    try:
        path, difference = export_onnx(args.checkpoint, args.output)
    except VbmdError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"{path}: largest probability difference from torch {difference:.2g}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
