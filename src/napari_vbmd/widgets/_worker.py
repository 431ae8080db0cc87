"""One way for every dock widget to run engine work: a napari thread worker with progress, cancel
and errors as notifications.

The work is a plain function ``work(progress, cancel)``: ``progress(step, total, message)`` may be
called from the worker thread (a queued Qt signal carries it to the GUI thread, where it moves a
determinate bar and a status line; napari's activity panel shows the same bar when asked), and
``cancel()`` says whether the user pressed Cancel. The result goes to ``on_result`` in the GUI
thread; a VbmdError becomes a one-line napari notification, a cancellation an information, any
other error one line too, with the traceback in the log. "Done" is for the widget to say, once the
result is on screen (``finish``).
"""
from __future__ import annotations

import functools
import logging
import threading
from typing import Callable

from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QMessageBox, QWidget

from ..errors import CancelledError, VbmdError

log = logging.getLogger("napari_vbmd.widgets")


def error_line(exc: BaseException, doing: str = "") -> str:
    """A one-line message for an error: the engine's own words, or the kind of bug it is."""
    if isinstance(exc, VbmdError):
        return str(exc)
    return f"{doing + ' failed: ' if doing else ''}{type(exc).__name__}: {exc}"


def notify_error(exc_or_message, doing: str = "") -> str:
    message = exc_or_message if isinstance(exc_or_message, str) else error_line(exc_or_message, doing)
    if not isinstance(exc_or_message, (str, VbmdError)):
        log.error("napari-vbmd: %s failed", doing or "work", exc_info=exc_or_message)
    show_error(message)
    return message


def reports_errors(method):
    """A slot whose problems become napari notifications, never a traceback dialog."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every error becomes one line for the user
            notify_error(exc, method.__name__.strip("_").replace("_", " "))
        return None

    return wrapper


def confirm(parent: QWidget, title: str, text: str) -> bool:
    """Ask a yes/no question (No is the default)."""
    answer = QMessageBox.question(parent, title, text, QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
    return answer == QMessageBox.Yes


class WorkRunner(QObject):
    """Runs one piece of work at a time for a widget (see the module docstring)."""

    progressed = Signal(int, int, str)

    def __init__(self, parent: QWidget, bar=None, label=None, cancel_button=None, activity: bool = False):
        super().__init__(parent)
        self._bar, self._label, self._cancel_button, self._activity = bar, label, cancel_button, activity
        self._worker = None
        self._napari_bar = None
        self._cancel = threading.Event()
        self.progressed.connect(self._show_progress)
        if cancel_button is not None:
            cancel_button.setEnabled(False)
            cancel_button.clicked.connect(lambda: self.cancel())

    @property
    def busy(self) -> bool:
        return self._worker is not None

    def start(self, work: Callable, *, description: str, on_result: Callable,
              on_error: Callable[[BaseException], None] | None = None,
              on_cancelled: Callable[[], None] | None = None,
              on_finished: Callable[[], None] | None = None) -> bool:
        """Start ``work(progress, cancel)``; False (and nothing started) while other work runs."""
        from napari.qt.threading import create_worker

        if self.busy:
            return False
        self._cancel = threading.Event()
        cancel, emit = self._cancel.is_set, self.progressed.emit
        if self._activity:
            from napari.utils import progress as napari_progress

            self._napari_bar = napari_progress(total=0, desc=description)
        if self._bar is not None:
            self._bar.setRange(0, 0)  # busy until the first report gives the totals
            self._bar.setFormat("%p%")
            self._bar.setVisible(True)
        if self._label is not None:
            self._label.setText(description + "…")
        if self._cancel_button is not None:
            self._cancel_button.setEnabled(True)

        def returned(value):
            on_result(value)

        def errored(exc):
            if isinstance(exc, CancelledError):
                self._idle("Cancelled: nothing was changed.")
                if on_cancelled is not None:
                    on_cancelled()
                else:
                    show_info("cancelled; nothing was changed")
                return
            message = notify_error(exc, description)
            self._idle(message)
            if on_error is not None:
                on_error(exc)

        def finished():
            self._worker = None
            self._close_activity()
            if self._cancel_button is not None:
                self._cancel_button.setEnabled(False)
            if on_finished is not None:
                on_finished()

        self._worker = create_worker(lambda: work(lambda s, t, m: emit(int(s), int(t), str(m)), cancel),
                                     _start_thread=False, _ignore_errors=True)
        self._worker.returned.connect(returned)
        self._worker.errored.connect(errored)
        self._worker.finished.connect(finished)
        self._worker.start()
        return True

    def cancel(self) -> None:
        if self._worker is not None:
            self._cancel.set()
            if self._label is not None:
                self._label.setText("Cancelling…")

    def finish(self, message: str) -> None:
        """The result is on screen: the widget's own words; the bar has done its job and goes."""
        if self._bar is not None:
            self._bar.setRange(0, 100)
            self._bar.setValue(100)
            self._bar.setFormat("done")
            self._bar.setVisible(False)
        if self._label is not None:
            self._label.setText(message)

    def _idle(self, message: str) -> None:
        if self._bar is not None:
            self._bar.setRange(0, 100)
            self._bar.setValue(0)
            self._bar.setFormat("")
            self._bar.setVisible(False)
        if self._label is not None:
            self._label.setText(message)

    def _show_progress(self, step: int, total: int, message: str) -> None:
        if self._worker is None:
            return
        if self._bar is not None and total > 0:
            self._bar.setRange(0, total)
            self._bar.setValue(min(step, total))
        if self._label is not None:
            self._label.setText(message[:1].upper() + message[1:])
        bar = self._napari_bar
        if bar is not None:
            if total > 0:
                bar.total = total
                bar.n = min(step, total)
            bar.set_description(message)
            bar.refresh()

    def _close_activity(self) -> None:
        if self._napari_bar is not None:
            self._napari_bar.close()
            self._napari_bar = None
