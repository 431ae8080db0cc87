"""A case's masks and its audit trail: the model's mask, every operation since, earlier versions.

``MaskHistory`` keeps the model's mask (original) next to the mask as it is now, the way MONAI Label
keeps its original and final labels: corrected masks are the next model's training data. Every
change is an entry with its name, the slices it touched, the voxels it added and removed, who made
it and when. A front end reports two kinds of change:

- ``record(name, mask)``: an edit it knows the name of (a correction tool, a paint stroke);
- ``observe(mask)``: a change it did not make itself (napari's undo and redo). It is matched
  against the edits: the exact reverse of the last edit still in force is an *undo* of that edit,
  a repeat of the last undone edit is a *redo*; anything else is an edit made outside the tools.
  Undo and redo are entries of the trail, but not edits: an undone edit no longer counts.

When a case is segmented again, ``supersede`` keeps the corrected mask (and its trail) on record as
an earlier version before the new model mask takes over.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np

from ..correction import CorrectionStats, as_inside, correction_stats
from ..errors import VbmdError
from ..util import timestamp

EDIT, UNDO, REDO = "edit", "undo", "redo"
OUTSIDE_THE_TOOLS = "change outside the tools"


def mask_sha256(mask) -> str:
    """SHA-256 of a mask's 0/1 voxels (uint8, C order) and its shape: names a version in a record."""
    inside = np.ascontiguousarray(as_inside(mask), dtype=np.uint8)
    digest = hashlib.sha256(repr(inside.shape).encode())
    digest.update(inside.tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class _Change:
    added: np.ndarray  # flat indices of voxels that became mask
    removed: np.ndarray  # flat indices of voxels that stopped being mask
    slices: tuple[int, ...]

    @classmethod
    def between(cls, before: np.ndarray, after: np.ndarray) -> "_Change":
        if before.shape != after.shape:
            raise VbmdError(f"mask shapes differ: {before.shape} and {after.shape}")
        differs = before != after
        flat = np.flatnonzero(differs)
        now_in = after.ravel()[flat]
        added, removed = flat[now_in], flat[~now_in]
        plane = before.shape[1] * before.shape[2]
        slices = tuple(int(z) for z in np.unique(flat // plane)) if flat.size else ()
        return cls(added, removed, slices)

    @property
    def empty(self) -> bool:
        return not (self.added.size or self.removed.size)

    def signature(self) -> tuple[str, str]:
        return (hashlib.sha1(self.added.astype(np.int64).tobytes()).hexdigest(),
                hashlib.sha1(self.removed.astype(np.int64).tobytes()).hexdigest())


class MaskHistory:
    """The model's mask, the mask now, and every operation in between (see the module docstring)."""

    def __init__(self, model_mask, model: str = ""):
        self.earlier_versions: list[dict] = []
        self._start(model_mask, model)

    def _start(self, model_mask, model: str) -> None:
        self.original = as_inside(model_mask).astype(np.uint8)
        self.model = model
        self.created_at = timestamp()
        self.operations: list[dict] = []
        self._current = self.original != 0
        self._signatures: list[tuple[str, str] | None] = []  # per operation, for matching undo/redo
        self._applied: list[int] = []  # edits in force, oldest first (napari's undo stack)
        self._undone: list[int] = []  # edits undone, most recent last (napari's redo stack)

    # -- what the mask is now --------------------------------------------------------------------
    @property
    def current(self) -> np.ndarray:
        """The last mask this history saw (bool; do not modify)."""
        return self._current

    @property
    def edits(self) -> list[dict]:
        """The edits in force: undone ones and the undo/redo entries themselves are not edits."""
        return [op for op in self.operations if op["kind"] == EDIT and not op["undone"]]

    @property
    def corrected(self) -> bool:
        """Whether the mask now differs from the model's."""
        return not np.array_equal(self._current, self.original != 0)

    @property
    def corrected_by(self) -> str | None:
        edits = self.edits
        return next((op["by"] for op in reversed(edits) if op["by"]), None) if self.corrected else None

    @property
    def corrected_at(self) -> str | None:
        edits = self.edits
        return edits[-1]["at"] if edits and self.corrected else None

    # -- changes ---------------------------------------------------------------------------------
    def record(self, name: str, mask, by: str = "") -> dict | None:
        """An edit the front end made or saw made (a tool, a paint stroke); None when nothing changed."""
        after = as_inside(mask)
        change = _Change.between(self._current, after)
        if change.empty:
            return None
        self._undone.clear()  # as in napari: a new edit ends what could be redone
        entry = self._append(name, EDIT, change, by, after)
        self._applied.append(len(self.operations) - 1)
        return entry

    def observe(self, mask, by: str = "") -> dict | None:
        """A change the front end did not make (undo, redo, or another tool); None when there is none."""
        after = as_inside(mask)
        change = _Change.between(self._current, after)
        if change.empty:
            return None
        added, removed = change.signature()
        if self._applied and self._signatures[self._applied[-1]] == (removed, added):
            target = self._applied.pop()
            self._undone.append(target)
            self.operations[target]["undone"] = True
            return self._append(f"undo {self.operations[target]['operation']}", UNDO, change, by, after, target)
        if self._undone and self._signatures[self._undone[-1]] == (added, removed):
            target = self._undone.pop()
            self._applied.append(target)
            self.operations[target]["undone"] = False
            return self._append(f"redo {self.operations[target]['operation']}", REDO, change, by, after, target)
        return self.record(OUTSIDE_THE_TOOLS, after, by)

    def _append(self, name, kind, change: _Change, by, after, target=None) -> dict:
        entry = {
            "operation": name, "kind": kind, "slices": list(change.slices), "added": int(change.added.size),
            "removed": int(change.removed.size), "by": by, "at": timestamp(), "undone": False,
        }
        if target is not None:
            entry["refers_to"] = target
        self.operations.append(entry)
        self._signatures.append(change.signature())
        self._current = after  # a fresh array of ours (as_inside), never the layer's own
        return entry

    # -- a new segmentation ----------------------------------------------------------------------
    def supersede(self, model_mask, model: str = "", reason: str = "segmented again") -> dict | None:
        """Start again from a new model mask; a corrected mask is kept on record first (returned)."""
        kept = None
        if self.corrected:
            stats = correction_stats(self.original, self._current)
            kept = {
                "model": self.model, "created_at": self.created_at, "replaced_at": timestamp(), "reason": reason,
                "corrected_by": self.corrected_by, "corrected_at": self.corrected_at,
                "voxels_added": stats.voxels_added, "voxels_removed": stats.voxels_removed,
                "n_voxels": int(self._current.sum()), "mask_sha256": mask_sha256(self._current),
                "operations": [dict(op) for op in self.operations],
            }
            self.earlier_versions.append({**kept, "mask": self._current.astype(np.uint8)})
        self._start(model_mask, model)
        return kept

    # -- reports ---------------------------------------------------------------------------------
    def stats(self, final=None, d100_before: float | None = None, d100_after: float | None = None) -> CorrectionStats:
        return correction_stats(self.original, self._current if final is None else final, d100_before, d100_after)

    def provenance(self) -> dict:
        """The trail for a report (JSON-ready; the masks of earlier versions are named by their hash)."""
        return {
            "model": self.model,
            "created_at": self.created_at,
            "model_mask_sha256": mask_sha256(self.original),
            "corrected_by": self.corrected_by,
            "corrected_at": self.corrected_at,
            "n_edits": len(self.edits),
            "operations": [dict(op) for op in self.operations],
            "earlier_versions": [{k: v for k, v in version.items() if k != "mask"}
                                 for version in self.earlier_versions],
        }
