"""Follows the case's mask layer through napari's public events, tells the session what happened
to it, and measures it again after each change (in a worker, after a short pause).

- ``events.paint``: an edit (a paint or erase stroke, a fill, a correction tool). napari may announce
  an edit before it writes it, so it is recorded right after, by name.
- ``events.set_data`` without a slice change, or ``events.data``: napari redrew the mask for another
  reason: its undo or redo, or new data. The session compares and tells undo and redo apart.
A slice change also emits ``set_data``; it moves the dims point, and is not compared (comparing
whole masks on every slice step would slow stepping).
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import QObject, Qt, QTimer
from qtpy.QtWidgets import QApplication

from ._worker import WorkRunner

RECOMPUTE_DELAY_MS = 400  # painting stays smooth: the mask is measured once the edits pause
SYNC_DELAY_MS = 50
STROKES = {"paint": "paint stroke", "erase": "erase stroke", "fill": "fill", "polygon": "polygon"}


def _timer(parent, interval: int, slot) -> QTimer:
    timer = QTimer(parent)
    timer.setSingleShot(True)
    timer.setInterval(interval)
    timer.timeout.connect(slot)
    return timer


class MaskFollower(QObject):
    """``on_edited()`` after each change the session recorded; ``on_measured()`` after a re-measure."""

    def __init__(self, widget, on_edited, on_measured, on_measure_error):
        super().__init__(widget)
        self._widget = widget
        self._on_edited, self._on_measured, self._on_measure_error = on_edited, on_measured, on_measure_error
        self.layer = None
        self.measurer = WorkRunner(widget)
        self._painted: list[str] = []  # edits announced and not yet recorded
        self._tool: str | None = None  # the correction tool whose edit is being written
        self._last_point = None
        self._token = 0  # changes with every case: a late re-measure of an earlier case is dropped
        self._pending = False
        self._paint_timer = _timer(self, 0, self._record_paint)
        self._sync_timer = _timer(self, SYNC_DELAY_MS, self._sync_after_redraw)
        self._measure_timer = _timer(self, RECOMPUTE_DELAY_MS, self._measure)

    @property
    def session(self):
        return self._widget.session

    @property
    def busy(self) -> bool:
        return any((self.measurer.busy, self._measure_timer.isActive(), self._sync_timer.isActive(),
                    self._paint_timer.isActive()))

    def follow(self, layer) -> None:
        """Follow ``layer`` from now on (None: follow nothing); its mask is taken as measured."""
        old = self.layer
        if old is not None:
            for emitter, slot in ((old.events.paint, self._on_paint), (old.events.set_data, self._on_set_data),
                                  (old.events.data, self._on_set_data)):
                emitter.disconnect(slot)
        for timer in (self._paint_timer, self._sync_timer, self._measure_timer):
            timer.stop()
        self._painted = []
        self._token += 1
        self.layer = layer
        if layer is not None:
            layer.events.paint.connect(self._on_paint)
            layer.events.set_data.connect(self._on_set_data)
            layer.events.data.connect(self._on_set_data)
            self._last_point = tuple(self._widget.viewer.dims.point)

    def write(self, operation: str, indices, values) -> None:
        """Write a correction tool's change as one napari undo step, and record it by name."""
        layer = self.layer
        self._tool = operation
        try:
            with layer.block_history():
                layer.data_setitem(indices, values.astype(layer.data.dtype))
        finally:
            self._tool = None
        self._painted = [name for name in self._painted if name != operation]
        self._edited(self.session.record(operation, layer.data, self._widget.reviewer()))

    def sync(self) -> None:
        """Tell the session about any change it has not seen yet."""
        self._record_paint()
        if self.layer is not None and self.session.active:
            self._edited(self.session.observe(self.layer.data, self._widget.reviewer()))

    # -- events ------------------------------------------------------------------------------------
    def _on_paint(self, event=None) -> None:
        if self.layer is None or not self.session.active:
            return
        name = self._tool or STROKES.get(str(self.layer.mode), "edit")
        if name not in self._painted:
            self._painted.append(name)
        self._paint_timer.start()

    def _record_paint(self) -> None:
        names, self._painted = self._painted, []
        if names and self.layer is not None and self.session.active:
            self._edited(self.session.record(" + ".join(names), self.layer.data, self._widget.reviewer()))

    def _on_set_data(self, event=None) -> None:
        point = tuple(self._widget.viewer.dims.point)
        if point != self._last_point:
            self._last_point = point
            return
        self._sync_timer.start()

    def _sync_after_redraw(self) -> None:
        if QApplication.mouseButtons() != Qt.MouseButton.NoButton:
            self._sync_timer.start()  # a stroke is being drawn: its paint event comes when it ends
            return
        self.sync()

    def _edited(self, entry) -> None:
        if entry is None:
            return
        self._on_edited()
        self._measure_timer.start()

    # -- measuring ---------------------------------------------------------------------------------
    def _measure(self) -> None:
        layer, session = self.layer, self.session
        if layer is None or not session.active:
            return
        if self.measurer.busy:
            self._pending = True
            return
        if not session.needs_measuring(layer.data):
            return
        mask, token = np.asarray(layer.data).copy(), self._token

        def accept(payload):
            if token == self._token and session.active:
                session.accept(*payload)
                self._on_measured()

        def finished():
            if self._pending:
                self._pending = False
                self._measure()

        self.measurer.start(lambda progress, cancel: session.measure(mask), description="Measuring the corrected mask",
                            on_result=accept, on_finished=finished, on_error=self._on_measure_error)
