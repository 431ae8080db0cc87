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


def open_desk(path, model: str, size: tuple[int, int] = (1600, 1000)):
    """A shown napari viewer of ``size`` with ``path`` opened by napari-vbmd and the Segment & measure widget
    docked, set to ``model`` on the CPU: (viewer, widget, app). The widget's look for the hand may still run."""
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    viewer.window.resize(*size)
    app = QApplication.instance()
    viewer.open(str(path), plugin="napari-vbmd")
    _, widget = viewer.window.add_plugin_dock_widget("napari-vbmd", "Segment & measure")
    widget.run_tab.model.value = model
    widget.run_tab.device.value = "cpu"
    return viewer, widget, app
