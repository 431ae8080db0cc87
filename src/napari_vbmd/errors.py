"""The one exception type the engine raises for bad input.

Every message names the file (when there is one) and the problem in one line, so the CLI can
print it as is and the GUI can show it as a notification.
"""
from __future__ import annotations

from pathlib import Path


class VbmdError(Exception):
    """Bad input or an impossible request, explained in one line."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else str(path)
        self.problem = message
        super().__init__(f"{self.path}: {message}" if self.path else message)


class CancelledError(Exception):
    """Raised inside long-running work when the caller asked it to stop."""
