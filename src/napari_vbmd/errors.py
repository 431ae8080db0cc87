"""The one exception type the engine raises for bad input.

Every message names the file (when there is one) and the problem in one line, so the CLI can
print it as is and the GUI can show it as a notification.
"""
from __future__ import annotations

import contextlib
import logging
from pathlib import Path


class VbmdError(Exception):
    """Bad input or an impossible request, explained in one line."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


def one_line(exc: BaseException) -> str:
    """A library's exception as one line of text (``Name: message``, line breaks folded)."""
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


@contextlib.contextmanager
def quiet_logs(*names: str):
    """Silence libraries' logged warnings about a file (tifffile's "contains no pages", nibabel's
    header "fixes") while a reader judges the file itself and says what matters in one line."""
    loggers = [logging.getLogger(name) for name in names]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


class CancelledError(Exception):
    """Raised inside long-running work when the caller asked it to stop."""
