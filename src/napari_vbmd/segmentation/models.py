"""One model reference: what ``--model`` names, the files behind it, their sha256, and the loaded model.

* :func:`resolve` turns a spec (``default``, ``classical``, ``unet2d``/``unet3d``, a checkpoint path) into a
  :class:`ModelRef` (name, files, sha256) without loading anything heavy: the CLI, batch and the
  pipeline all start here, so an unknown model or one without weights is refused in one place.
* :func:`load` gives the model object for a reference and a device, from one cache keyed by the
  files' sha256 (the same checkpoint is built once per process and device).
* The classical method (:class:`ClassicalModel`) has the interface of a loaded network
  (:class:`LoadedModel`): name, device, threshold, boundary band, crop margin, working spacing and
  ``predict(work, ...)``; the pipeline never asks which of the two it holds.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..errors import CancelledError, VbmdError
from ..util import sha256_files
from .postprocess import DEFAULT_EDGE_LEVEL

BUNDLED_DIR = Path(__file__).resolve().parents[1] / "models"
DEFAULT_CHECKPOINT = BUNDLED_DIR / "default"

#: names that are not paths
MODEL_NAMES = ("default", "unet2d", "unet3d", "classical")

_NO_WEIGHTS = (
    "no trained weights are bundled for {name!r} ({what}): the study's weights were never published. "
    "Train one with `vbmd train DATA -o DIR --architecture {arch}` and pass --model DIR/best.json, "
    "or use --model default (phantom-trained) or --model classical"
)
_STUDY_NETWORKS = {
    "unet2d": ("the study's 2D U-Net, ResNet34 encoder", "unet2d_resnet34"),
    "unet3d": ("the study's 3D U-Net", "unet3d_isensee"),
}
DEVICES = "auto, cpu, cuda, cuda:N or mps"


@dataclass(frozen=True)
class ModelRef:
    """A model named by the user, resolved: ``files`` is empty for the classical method."""

    spec: str
    name: str
    files: tuple[Path, ...]
    sha256: str
    architecture: str | None = None

    @property
    def classical(self) -> bool:
        return not self.files

    def identity(self) -> dict:
        """What a batch record keeps of the model (a rerun compares the sha256)."""
        return {"spec": self.spec, "name": self.name, "sha256": self.sha256,
                "path": str(self.files[0].resolve()) if self.files else None,
                **({"architecture": self.architecture} if self.architecture else {})}


def resolve(spec: str | Path | "ModelRef") -> ModelRef:
    """The model a spec names; refuses unknown names, missing files and models without weights."""
    if isinstance(spec, ModelRef):
        return spec
    from .. import __version__
    from .checkpoint import checkpoint_paths, read_config

    name = str(spec)
    if name == "classical":
        return ModelRef(name, "classical", (), f"classical-{__version__}")
    if name in _STUDY_NETWORKS:
        what, arch = _STUDY_NETWORKS[name]
        raise VbmdError(_NO_WEIGHTS.format(name=name, what=what, arch=arch))
    if name == "default":
        path = DEFAULT_CHECKPOINT
        if not path.with_suffix(".json").is_file():
            raise VbmdError("the bundled default model is missing from this installation (use --model classical "
                            "or a checkpoint path)", path.with_suffix(".json"))
    else:
        path = Path(name)
        if not path.exists() and not path.with_suffix(".json").exists():
            raise VbmdError(
                f"unknown model {name!r}: give one of {', '.join(MODEL_NAMES)} or a checkpoint path "
                "(NAME.json beside NAME.safetensors, or a folder holding them)"
            )
    config_path, weights_path = checkpoint_paths(path)
    config = read_config(config_path)
    return ModelRef(name, name if name in MODEL_NAMES else config.name, (config_path, weights_path),
                    sha256_files([config_path, weights_path]), config.architecture)


# -- devices ------------------------------------------------------------------------------------------


def check_device(device) -> str:
    """The spelling of a device request (no torch needed); whether it exists is :func:`resolve_device`'s."""
    text = str(device or "auto").lower()
    if text in ("auto", "cpu", "mps", "cuda") or (text.startswith("cuda:") and text[5:].isdigit()):
        return text
    raise VbmdError(f"unknown device {device!r}; use {DEVICES}")


def resolve_device(device="auto"):
    """'auto' -> CUDA, then MPS, then CPU; a forced device that is not there is an error."""
    import torch

    device = check_device(device)
    mps = getattr(torch.backends, "mps", None)
    mps_ok = bool(mps is not None and mps.is_available())
    if device == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        return torch.device("mps") if mps_ok else torch.device("cpu")
    if device.startswith("cuda"):
        if not torch.cuda.is_available():
            raise VbmdError(f"device {device!r} requested but CUDA is not available on this machine (use --device cpu or auto)")
        return torch.device(device)
    if device == "mps":
        if not mps_ok:
            raise VbmdError("device 'mps' requested but Apple MPS is not available on this machine")
        return torch.device("mps")
    return torch.device("cpu")


# -- the two kinds of model, one interface ------------------------------------------------------------

Progress = Callable[[int, int, str], None]


def check_cancel(cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("segmentation cancelled")


@dataclass
class LoadedModel:
    """A network with its checkpoint's config, on a device."""

    network: Any  # torch.nn.Module, or onnx_runtime.OnnxNetwork
    config: Any  # checkpoint.ModelConfig
    name: str
    device: Any  # torch.device, or "cpu" for ONNX Runtime
    source: str
    sha256: str = ""
    #: what runs the network: "torch" or "onnxruntime"; ``runtime_note`` says why torch where an
    #: exported ONNX file was there but not used
    runtime: str = "torch"
    runtime_note: str = ""

    @property
    def runtime_version(self) -> str:
        if self.runtime == "onnxruntime":
            from .onnx_runtime import runtime_version

            return runtime_version()
        import torch

        return f"torch {torch.__version__}"

    @property
    def size_multiple(self) -> int:
        """Input sizes must be a multiple of this (the network's downsampling steps)."""
        if self.runtime == "onnxruntime":
            return self.network.multiple
        from .networks import size_multiple

        return size_multiple(self.network, self.config.architecture)

    @property
    def default_batch_size(self) -> int:
        if self.runtime == "onnxruntime":  # split over the threads (onnx_runtime.OnnxNetwork.probability)
            return max(8, 2 * self.network.workers)
        return 8 if str(self.device) == "cpu" else 32

    def forward(self, batch: np.ndarray) -> np.ndarray:
        """float32 probabilities (b, ...) for a z-scored batch (b, channels, ...)."""
        if self.runtime == "onnxruntime":
            return self.network.probability(batch)
        from .inference import torch_probability

        self.network.eval()
        return torch_probability(self.network, self.device, batch)

    def threads(self, threads: int | None):
        """A context running this model's forward passes on ``threads`` CPU threads."""
        if self.runtime == "onnxruntime":
            return self.network.threads(threads)
        from .inference import torch_threads

        return torch_threads(threads)

    @property
    def threshold(self) -> float:
        return float(self.config.threshold)

    @property
    def boundary_band_mm(self) -> float:
        return float(self.config.boundary_band_mm)

    @property
    def edge_level(self) -> float:
        return float(self.config.edge_level)

    def band_for(self, requested: float | None) -> float:
        """The boundary refinement band to use: the caller's, else the checkpoint's."""
        return float(requested) if requested is not None else self.boundary_band_mm

    @property
    def crop_margin_mm(self) -> float:
        return float(self.config.crop_margin_mm)

    @property
    def dims(self) -> int:
        return self.config.dims

    def working_spacing(self, native_spacing) -> tuple[float, float, float]:
        """(z, y, x) mm of the grid the network sees; 2D networks keep the native slices."""
        z = float(self.config.spacing_mm[0]) if self.dims == 3 else float(native_spacing[0])
        return z, float(self.config.spacing_mm[1]), float(self.config.spacing_mm[2])

    def predict(self, work, batch_size: int | None = None, progress: Progress | None = None, cancel=None) -> np.ndarray:
        from .inference import predict_network

        return predict_network(self, work, batch_size, progress, cancel)


@dataclass
class ClassicalModel:
    """The method without weights (:mod:`.classical`) behind the interface of a loaded network."""

    name: str = "classical"
    device: str = "cpu"
    source: str = "classical"
    sha256: str = ""
    threshold: float = 0.5
    boundary_band_mm: float = 0.0  # it snaps its own contour onto the edges
    edge_level: float = DEFAULT_EDGE_LEVEL  # never used: no band
    crop_margin_mm: float = 4.0
    dims: int = 2

    def band_for(self, requested: float | None) -> float:
        """Always 0: the method snaps its own contour onto the scan's edges, whatever is asked."""
        return 0.0

    def working_spacing(self, native_spacing) -> tuple[float, float, float]:
        from .classical import CLASSICAL_SPACING_MM

        return float(native_spacing[0]), CLASSICAL_SPACING_MM, CLASSICAL_SPACING_MM

    def predict(self, work, batch_size: int | None = None, progress: Progress | None = None, cancel=None) -> np.ndarray:
        from .classical import classical_probability

        check_cancel(cancel)
        probability = classical_probability(work.output(), work.spacing, findings=work.findings)
        if progress:
            progress(1, 2, "classical method: contour found")
        return probability


# -- the one cache --------------------------------------------------------------------------------------

_CACHE: dict[tuple[str, str], LoadedModel] = {}
_CACHE_LOCK = threading.Lock()


def load(ref: ModelRef | str | Path, device="auto", cached: bool = True, runtime: str = "auto"):
    """The model object for ``ref`` on ``device`` (a :class:`ClassicalModel` for the classical method).

    On the CPU a network runs in ONNX Runtime when an ONNX file exported from exactly its weights sits
    beside the checkpoint (``runtime="auto"``; the bundled default model has one), else in torch;
    ``runtime`` "torch" or "onnxruntime" forces one (the latter refuses when it cannot). Networks are
    kept per (sha256, device, runtime) for the life of the process; the files are hashed again
    before a build, so a checkpoint that changed on disk since :func:`resolve` is refused.
    """
    ref = resolve(ref)
    if ref.classical:
        if not _runs_on_cpu(device):  # checks the spelling too
            resolve_device(device)  # a bad device request is an error for every model
        return ClassicalModel(sha256=ref.sha256)
    check_runtime(runtime)
    on_cpu = _runs_on_cpu(device)
    torch_device = None if on_cpu and runtime != "torch" else resolve_device(device)
    key = (ref.sha256, "cpu" if torch_device is None else str(torch_device), runtime)
    with _CACHE_LOCK:
        if cached and key in _CACHE:
            return _CACHE[key]
        from .checkpoint import load_checkpoint, read_config

        if sha256_files(ref.files) != ref.sha256:
            raise VbmdError("the bundled default model here differs from the one the batch started with (install "
                            "the same napari-vbmd version everywhere)" if ref.spec == "default" else
                            "the checkpoint here differs from the one the batch started with (workers need the "
                            "same file at the same path; or it changed on disk)", ref.files[0])
        note = "" if on_cpu or runtime == "torch" else "ONNX Runtime runs on the CPU only"
        if torch_device is None:
            from .onnx_runtime import usable_onnx

            config = read_config(ref.files[0])
            network, note = usable_onnx(ref.files[1], config.architecture)
            if network is not None:
                loaded = LoadedModel(network, config, ref.name, "cpu", str(ref.files[0]), ref.sha256,
                                     runtime="onnxruntime")
                if cached:
                    _CACHE[key] = loaded
                return loaded
            if runtime == "onnxruntime":
                raise VbmdError(f"cannot run this model with ONNX Runtime: {note}", ref.files[0])
            torch_device = resolve_device("cpu")
        network, config = load_checkpoint(ref.files[0], device=torch_device)
        loaded = LoadedModel(network, config, ref.name, torch_device, str(ref.files[0]), ref.sha256,
                             runtime="torch", runtime_note=note)
        if cached:
            _CACHE[key] = loaded
        return loaded


RUNTIMES = ("auto", "onnxruntime", "torch")


def check_runtime(runtime: str) -> str:
    if runtime not in RUNTIMES:
        raise VbmdError(f"unknown runtime {runtime!r}; use {', '.join(RUNTIMES)}")
    return runtime


#: files whose presence means torch may find an accelerator (NVIDIA, ROCm, WSL's GPU bridge)
_ACCELERATOR_FILES = ("/proc/driver/nvidia/version", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")


def _runs_on_cpu(device) -> bool:
    """Whether ``device`` means the CPU, answered without importing torch where it can be: 'auto' on
    a machine with no GPU driver (no NVIDIA/ROCm device files, not macOS) is the CPU."""
    import os
    import sys

    device = check_device(device)
    if device == "cpu":
        return True
    if device != "auto":
        return False
    if "torch" in sys.modules or sys.platform == "darwin" or any(os.path.exists(p) for p in _ACCELERATOR_FILES):
        return resolve_device("auto").type == "cpu"
    return True


def load_model(spec: str | Path, device="auto") -> LoadedModel:
    """A network by name ('default') or checkpoint path, from the one cache (:func:`load`); the
    classical method is refused: it is not a network (pass "classical" to ``segment()`` as it is)."""
    ref = resolve(spec)
    if ref.classical:
        raise VbmdError("'classical' is not a network; segment() runs it without weights")
    return load(ref, device)


def is_loaded(ref: ModelRef, device="auto") -> bool:
    """Whether :func:`load` would answer from the cache (the classical method needs no loading)."""
    if ref.classical:
        return True
    where = "cpu" if _runs_on_cpu(device) else str(resolve_device(device))
    return any(key[:2] == (ref.sha256, where) for key in _CACHE)


def ref_from_identity(identity: dict) -> ModelRef:
    """The reference a batch record's identity describes, on this machine: the bundled model is
    wherever this installation keeps it, a checkpoint at the path the batch was started with."""
    from .checkpoint import checkpoint_paths

    if identity["spec"] == "classical":
        return ModelRef("classical", "classical", (), identity["sha256"])
    files = checkpoint_paths(DEFAULT_CHECKPOINT if identity["spec"] == "default" else identity["path"])
    return ModelRef(identity["spec"], identity["name"], files, identity["sha256"], identity.get("architecture"))


def model_for(model, device="auto"):
    """What the pipeline runs: an already loaded model as it is, else the cached load of the spec."""
    if isinstance(model, (LoadedModel, ClassicalModel)):
        return model
    return load(resolve(model), device)
