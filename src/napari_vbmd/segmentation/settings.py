"""How a scan is segmented, checked once: the CLI, batch (and later the widget) build a
:class:`SegmentSettings`; ``segment()`` and ``BatchSettings`` take it as it is."""
from __future__ import annotations

import dataclasses
import math
import os
from dataclasses import dataclass
from typing import Any

from ..errors import VbmdError
from .postprocess import HOLE_FILLING, POSTPROCESS_VERSION, check_boundary_band

HANDS = ("auto", "left", "right")


@dataclass(frozen=True)
class SegmentSettings:
    """Everything about one segmentation except the scan. Invalid values raise on construction.

    ``model``: a spec (``default``, ``classical``, a checkpoint path) or an already loaded model.
    ``hand``: ``auto`` (the file's header, else the image), ``left``/``right``, or a decided
    :class:`~napari_vbmd.segmentation.hand.HandDecision` (e.g. from a batch manifest).
    ``slice_range``: ``"A:B"`` or
    ``(A, B)`` (checked against the scan when it is known). ``boundary_band_mm``: None = the model's own
    setting, 0 keeps the network's boundary. ``threads``: CPU threads for inference (None: torch's).
    """

    model: Any = "default"
    device: str = "auto"
    hand: Any = "auto"  # "auto" | "left" | "right" | a decided HandDecision
    slice_range: Any = None
    voi_mm: float | None = None
    threads: int | None = None
    hole_filling: str = "fill"
    batch_size: int | None = None
    keep_probability: bool = False
    boundary_band_mm: float | None = None

    def __post_init__(self):
        from .models import check_device

        set_ = lambda name, value: object.__setattr__(self, name, value)  # noqa: E731 (frozen)
        from .hand import HandDecision

        set_("hand", "auto" if self.hand is None else self.hand)
        if isinstance(self.hand, HandDecision):
            if not self.hand.decided:
                raise VbmdError(f"an undecided hand cannot be segmented ({self.hand.reason})")
        elif self.hand not in HANDS:
            raise VbmdError(f"hand must be auto, left or right, got {self.hand!r}")
        if self.hole_filling not in HOLE_FILLING:
            raise VbmdError(f"hole filling must be one of {', '.join(HOLE_FILLING)}, got {self.hole_filling!r}")
        if self.voi_mm is not None:
            voi = _number(self.voi_mm)
            if not (math.isfinite(voi) and voi > 0):
                raise VbmdError(f"the VOI length must be a positive number of mm, got {self.voi_mm!r}")
            set_("voi_mm", voi)
        for name in ("threads", "batch_size"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise VbmdError(f"{name.replace('_', ' ')} must be at least 1, got {value!r}")
        if self.boundary_band_mm is not None:
            set_("boundary_band_mm", check_boundary_band(self.boundary_band_mm))
        if isinstance(self.slice_range, list):
            set_("slice_range", tuple(self.slice_range))
        if self.slice_range is not None:
            _check_slice_range_syntax(self.slice_range)
        set_("device", check_device(self.device))
        if isinstance(self.model, os.PathLike):
            set_("model", os.fspath(self.model))

    def replace(self, **changes) -> "SegmentSettings":
        return dataclasses.replace(self, **changes)

    def result_key(self) -> dict:
        """The settings that change a segmentation's mask (not the model, device, threads or batch size),
        with the version of the post-processing that made it."""
        return {"hand": self.hand, "voi_mm": self.voi_mm, "hole_filling": self.hole_filling,
                "postprocess": POSTPROCESS_VERSION}


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _check_slice_range_syntax(value) -> None:
    if isinstance(value, tuple):
        if len(value) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            raise VbmdError(f"slice range must be two integers (start, stop), got {value!r}")
        return
    parts = str(value).split(":")
    if len(parts) != 2:
        raise VbmdError(f"slice range must look like A:B, got {value!r}")
    for part in parts:
        if part.strip():
            try:
                int(part)
            except ValueError:
                raise VbmdError(f"slice range must be integers A:B, got {value!r}") from None
