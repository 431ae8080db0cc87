"""The Hand control of the Run form, kept apart so it can follow the engine's hand decision.

A choice (auto / left / right) and a line saying where the hand of the last run came from. Today
"auto" means the file's header (or, when it is silent, the pipeline's assumption, which the line
then says); the widget reads ``requested()`` and shows ``show_decision(...)`` after a run.
"""
from __future__ import annotations

from magicgui import widgets as mw

AUTO = "auto (from the file)"
CHOICES = (AUTO, "left", "right")


class HandControl(mw.Container):
    def __init__(self):
        self.choice = mw.ComboBox(choices=CHOICES, value=AUTO,
                                  tooltip="left hands are mirrored for the network; auto reads the file's header")
        self.source = mw.Label(value="")
        self.source.visible = False
        super().__init__(widgets=[self.choice, self.source], layout="vertical", labels=False, label="Hand")
        self.margins = (0, 0, 0, 0)

    def requested(self) -> str | None:
        """'left', 'right', or None for the file's own."""
        value = self.choice.value
        return None if value == AUTO else value

    def show_decision(self, words: str) -> None:
        """After a run: e.g. 'right (from the file's header)'."""
        self.source.value = f"last run: {words}"
        self.source.tooltip = words
        self.source.visible = bool(words)

    def clear(self) -> None:
        self.source.value = ""
        self.source.visible = False
