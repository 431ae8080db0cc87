"""Training state kept between runs: the optimizer (safetensors + JSON, never pickle) for ``--resume``,
``metrics.csv``'s columns, and batch-norm statistics of averaged weights."""
from __future__ import annotations

import csv
import json
import platform
import subprocess
from pathlib import Path

import numpy as np
import torch

from .._atomic import atomic_path, write_text_atomic
from ..errors import VbmdError

METRIC_COLUMNS = ["epoch", "train_loss", "val_dice", "val_iou", "val_auc", "val_accuracy", "lr", "seconds",
                  "grad_norm"]


def training_environment(device) -> dict:
    """What a run's arithmetic depends on besides its data and settings, kept with its checkpoint: a rerun of
    the shipped recipe on the same data gave other weights under other library versions (docs/default-model.md,
    "Candidate R"), and without this record nobody could say afterwards what had changed."""
    import scipy

    return {"python": platform.python_version(), "torch": torch.__version__, "numpy": np.__version__,
            "scipy": scipy.__version__, "torch_threads": torch.get_num_threads(), "device": str(device),
            "machine": platform.machine(), "cpu": _cpu_name(), "code": _code_revision()}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def _code_revision() -> str | None:
    """The git commit of the napari_vbmd source this run uses (``+dirty`` when its tracked files differ from
    it), or None when it is not a git checkout (an installed package)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no", "--",
                                str(here.parent)], capture_output=True, text=True, timeout=10, check=True).stdout
    except (OSError, subprocess.SubprocessError):
        return None
    return f"{head}+dirty" if dirty.strip() else head or None


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
