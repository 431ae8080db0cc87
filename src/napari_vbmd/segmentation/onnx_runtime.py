"""Inference on the CPU through ONNX Runtime, without importing torch.

A checkpoint ``NAME.json`` + ``NAME.safetensors`` may have ``NAME.onnx`` beside it: the same network
exported by :mod:`.onnx_export`, answering probabilities (the sigmoid is part of the graph). The
export records the sha256 of the weights file it was made from; an ONNX file whose record does not
match the weights beside it is not used (torch answers instead, and the result says which runtime
ran). ONNX Runtime is a well-kept CPU runtime: on the default model it needs about half the time of
torch's CPU kernels and spares the process torch's import (docs/benchmarks.md).
"""
from __future__ import annotations

import contextlib
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from ..util import sha256_file

FORMAT = "napari-vbmd-onnx"
FORMAT_VERSION = "1"
#: keys of the ONNX file's metadata
META_FORMAT = "napari_vbmd_format"
META_WEIGHTS_SHA256 = "napari_vbmd_weights_sha256"
META_SIZE_MULTIPLE = "napari_vbmd_size_multiple"
META_ARCHITECTURE = "napari_vbmd_architecture"


def onnx_path(weights_path: Path) -> Path:
    return Path(weights_path).with_suffix(".onnx")


def available() -> bool:
    try:
        import onnxruntime  # noqa: F401
    except ImportError:
        return False
    return True


def runtime_version() -> str:
    import onnxruntime

    return f"onnxruntime {onnxruntime.__version__}"


class OnnxNetwork:
    """An exported network in a one-thread ONNX Runtime session; with more threads, parts of a batch
    run through it side by side."""

    def __init__(self, session, size_multiple: int, architecture: str):
        self.session = session
        self.multiple = int(size_multiple)
        self.architecture = architecture
        self._local = threading.local()

    @property
    def workers(self) -> int:
        """How many parts of a batch this thread's forward passes run side by side."""
        from .parallel import workers

        return workers(getattr(self._local, "threads", None))

    @contextlib.contextmanager
    def threads(self, threads: int | None):
        """Run this thread's forward passes on ``threads`` CPU threads (None: every CPU)."""
        previous = getattr(self._local, "threads", None)
        self._local.threads = int(threads) if threads else None
        try:
            yield
        finally:
            self._local.threads = previous

    def probability(self, batch: np.ndarray) -> np.ndarray:
        """float32 probabilities (b, ...) for a z-scored batch (b, channels, ...).

        With n threads the batch is split in n parts, each run on one thread at the same time: on
        this small network that is faster than one run with n threads per operator (2 cores: 8.3
        against 12.2 ms per slice; every slice is computed on its own either way)."""
        batch = np.ascontiguousarray(batch, dtype=np.float32)
        parts = min(self.workers, len(batch))
        session = self.session
        name = session.get_inputs()[0].name
        if parts <= 1:
            return session.run(None, {name: batch})[0][:, 0]
        with ThreadPoolExecutor(parts) as pool:
            outs = list(pool.map(lambda part: session.run(None, {name: part})[0], np.array_split(batch, parts)))
        return np.concatenate(outs)[:, 0]


def open_session(path: Path):
    """An ONNX Runtime CPU session running each operator on the calling thread (one thread)."""
    import onnxruntime

    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    return onnxruntime.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def usable_onnx(weights_path: Path, architecture: str) -> tuple[OnnxNetwork | None, str]:
    """The ONNX network exported from exactly these weights, or (None, why not)."""
    path = onnx_path(weights_path)
    if not path.is_file():
        return None, "no exported ONNX file beside the checkpoint"
    if not available():
        return None, "onnxruntime is not installed"
    try:
        session = open_session(path)
    except Exception:  # noqa: BLE001 - a file ONNX Runtime cannot open is not used, whatever the reason
        return None, f"ONNX Runtime cannot open {path.name}"
    meta = dict(session.get_modelmeta().custom_metadata_map)
    if meta.get(META_FORMAT) != f"{FORMAT} {FORMAT_VERSION}":
        return None, f"{path.name} is not an ONNX export of napari-vbmd"
    if meta.get(META_WEIGHTS_SHA256) != sha256_file(weights_path):
        return None, f"{path.name} was exported from other weights than {Path(weights_path).name}"
    if meta.get(META_ARCHITECTURE) != architecture:
        return None, f"{path.name} holds another architecture ({meta.get(META_ARCHITECTURE)!r})"
    try:
        multiple = int(meta[META_SIZE_MULTIPLE])
    except (KeyError, ValueError):
        return None, f"{path.name} does not say its size multiple"
    return OnnxNetwork(session, multiple, architecture), ""
