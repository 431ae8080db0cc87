"""The plugin's keys, bound to the viewer through napari's keybinding system.

Each key is a napari action (``napari-vbmd:...``) bound on the Viewer, so it works whatever layer
is selected, shows in napari's shortcut list (Preferences › Shortcuts, "Viewer key bindings") and
can be changed there. An action goes to the newest live widget of its kind in that viewer.
"""
from __future__ import annotations

import weakref
from typing import Callable

from napari.utils.action_manager import action_manager
from napari.viewer import Viewer

#: action name -> (default key, description, widget kind, what it does to the widget)
ACTIONS: dict[str, tuple[str, str, str, Callable]] = {
    "napari-vbmd:next_flagged": ("Shift-N", "Segment & measure: next slice flagged for review", "workflow",
                                 lambda w: w.next_flagged()),
    "napari-vbmd:previous_flagged": ("Shift-P", "Segment & measure: previous slice flagged for review", "workflow",
                                     lambda w: w.next_flagged(backwards=True)),
    "napari-vbmd:toggle_outline": ("Shift-C", "Segment & measure: mask as outline / filled", "workflow",
                                   lambda w: w.toggle_outline()),
    "napari-vbmd:contour_1_alone": ("Q", "Rating: show Contour 1 alone (again: both)", "rating",
                                    lambda w: w.show_alone(0)),
    "napari-vbmd:contour_2_alone": ("W", "Rating: show Contour 2 alone (again: both)", "rating",
                                    lambda w: w.show_alone(1)),
}

_targets: dict[str, list[weakref.ref]] = {"workflow": [], "rating": []}
_registered = False


def _dispatch(name: str, viewer) -> None:
    _, _, kind, act = ACTIONS[name]
    for ref in reversed(_targets[kind]):
        widget = ref()
        if widget is None:
            continue
        try:
            if widget.viewer == viewer:
                act(widget)
                return
        except RuntimeError:  # the widget's Qt object is gone
            continue


def _make_command(name: str):
    def command(viewer: Viewer) -> None:
        _dispatch(name, viewer)

    command.__name__ = name.split(":")[1]
    return command


def register(widget, kind: str) -> None:
    """Let ``widget`` (of ``kind``: workflow / rating) receive its keys from now on."""
    global _registered
    if not _registered:
        for name, (key, description, _, _) in ACTIONS.items():
            action_manager.register_action(name, _make_command(name), description, Viewer)
            action_manager.bind_shortcut(name, key)
        _registered = True
    _targets[kind][:] = [ref for ref in _targets[kind] if ref() is not None]
    _targets[kind].append(weakref.ref(widget))


def key_of(name: str) -> str:
    """The key shown to the user, e.g. 'Shift+N'."""
    return ACTIONS[name][0].replace("-", "+")
