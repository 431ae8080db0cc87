"""One determinate progress for a job made of named stages.

Each stage has a weight (its share of the bar); a stage that reports its own steps (the
segmentation's batches of slices) moves the bar within its share. Every report is
``(step, total, message)`` with a message that names the stage, its place and, when the stage
counts, its own totals: "step 3 of 5: segmenting: slices 8-15 (batch 2 of 9)". The front end
draws it; the job never says "done": the front end does, once the result is on screen.
"""
from __future__ import annotations

from typing import Callable, Sequence

Report = Callable[[int, int, str], None]
UNITS = 1000  # the bar's total


class StagedProgress:
    def __init__(self, stages: Sequence[tuple[str, float]], report: Report | None = None):
        if not stages:
            raise ValueError("a staged progress needs at least one stage")
        self.names = [name for name, _ in stages]
        weights = [float(weight) for _, weight in stages]
        total = sum(weights)
        self._starts, start = [], 0.0
        for weight in weights:
            self._starts.append(start / total)
            start += weight
        self._shares = [w / total for w in weights]
        self._report = report
        self.index = -1
        self.last: tuple[int, int, str] | None = None

    @property
    def n_stages(self) -> int:
        return len(self.names)

    def _emit(self, fraction: float, detail: str = "") -> None:
        name = self.names[self.index]
        message = f"step {self.index + 1} of {self.n_stages}: {name}" + (f": {detail}" if detail else "")
        self.last = (int(round(UNITS * min(max(fraction, 0.0), 1.0))), UNITS, message)
        if self._report is not None:
            self._report(*self.last)

    def stage(self, name: str, detail: str = "") -> None:
        """Start stage ``name`` (stages may be skipped, not repeated out of order)."""
        index = self.names.index(name)
        if index < self.index:
            raise ValueError(f"stage {name!r} comes before {self.names[self.index]!r}")
        self.index = index
        self._emit(self._starts[index], detail)

    def within(self, step: int, total: int, message: str = "") -> None:
        """The current stage's own progress: ``step`` of ``total``, with its own words."""
        if self.index < 0:
            raise ValueError("no stage started")
        fraction = min(max(step / total, 0.0), 1.0) if total > 0 else 0.0
        detail = message
        if total > 1:
            detail = f"{message} ({min(step, total)} of {total})" if message else f"{min(step, total)} of {total}"
        self._emit(self._starts[self.index] + fraction * self._shares[self.index], detail)
