"""The one Qt event loop every scripts/screenshots_*.py waits with: let the widget work (a run, a
hand detection, a case loading) and the window repaint before a screenshot is taken."""
from __future__ import annotations

import time


def process_events(app, until=None, timeout: float = 600.0, settle: float = 0.0) -> bool:
    """Let Qt work: process events until `until()` holds (or `timeout` seconds pass), then `settle`
    seconds more (repaints, toasts); returns whether `until` held (True when there is none)."""
    end = time.perf_counter() + timeout
    held = until is None or until()
    while not held and time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
        held = until()
    end = time.perf_counter() + settle
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.01)
    return held
