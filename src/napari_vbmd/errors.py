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


def one_line(exc: BaseException, named: bool = True) -> str:
    """An exception as one line of text, line breaks folded: ``Name: message`` (a library's), or with
    ``named=False`` the message alone (ours, which names the file); the type's name when it says nothing."""
    text = " ".join(str(exc).split())
    if not text:
        return type(exc).__name__
    return f"{type(exc).__name__}: {text}" if named else text


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
