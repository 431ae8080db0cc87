"""The Hand control of the Run form: a choice (auto / left / right) and a line saying which hand
Run will use and where it comes from, or, when nothing decides it, a marked line asking for it.

The widget looks for the hand of the scan chosen (``looking``, then ``show_auto`` with the engine's
:class:`~napari_vbmd.segmentation.hand.HandDecision`: the file's header, else the image); the line
then reads "auto: left (found in the image, confidence 0.997)" or, undecided, "⚠ choose the hand:
the image cannot tell (a crop of MC2 and MC3)" with the control marked, and ``needs_choice()``
stops Run until left or right is chosen. Never a silent default.
"""
from __future__ import annotations

from magicgui import widgets as mw
from qtpy.QtWidgets import QSizePolicy

from ..session.hand_words import ask_words, decision_words, why_undecided

AUTO = "auto"
CHOICES = (AUTO, "left", "right")
#: the marked control's colour: Okabe & Ito's orange, readable on napari's dark and light themes
MARK_COLOUR = "#E69F00"
_TIP = ("left hands are mirrored for the network; auto takes the file's header, else finds the side in the "
        "image of a whole hand, and asks when neither can tell (docs/hand.md)")


class HandControl(mw.Container):
    def __init__(self):
        self.choice = mw.ComboBox(choices=CHOICES, value=AUTO, tooltip=_TIP)
        self.source = mw.Label(value="")
        self.source.native.setWordWrap(True)
        self.source.native.setMinimumWidth(10)
        self.source.native.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Preferred)
        super().__init__(widgets=[self.choice, self.source], layout="vertical", labels=False, label="Hand")
        self.margins = (0, 0, 0, 0)
        self.auto = None  # the HandDecision of "auto" for the scan chosen, once looked for
        self.image = None  # what the image showed (a decided HandDecision), when it was looked at
        self._state = "none"  # none | looking | auto | failed | run | refused
        self._note = ""  # the words of a failed look, a run, or a refusal
        self.marked = False
        self.choice.changed.connect(lambda *_: self._on_choice())

    # -- what the widget reads ---------------------------------------------------------------------
    def requested(self) -> str | None:
        """'left', 'right', or None for auto (the file's header, else the image)."""
        value = self.choice.value
        return None if value == AUTO else value

    def needs_choice(self) -> bool:
        """Auto is chosen and the scan's header and image were looked at and do not decide the hand."""
        return self.requested() is None and self.auto is not None and not self.auto.decided

    def ask(self) -> str:
        """'choose the hand: the image cannot tell (…)', when it must be chosen."""
        return ask_words(self.auto) if self.auto is not None else "choose the hand: left or right"

    def why(self) -> str:
        """Why auto does not decide: 'the image cannot tell (a crop of MC2 and MC3)'."""
        return why_undecided(self.auto) if self.auto is not None else "it has not been looked for"

    # -- what the widget shows ---------------------------------------------------------------------
    def looking(self) -> None:
        self.auto, self.image, self._state = None, None, "looking"
        self._refresh()

    def show_auto(self, decision, seen=None) -> None:
        """The hand auto gives for the scan chosen (decided, or not), and what the image showed."""
        self.auto, self._state = decision, "auto"
        self.image = seen if seen is not None and seen.decided else None
        self._refresh()

    def show_failed(self, message: str) -> None:
        self.auto, self.image, self._state, self._note = None, None, "failed", message
        self._refresh()

    def show_decision(self, words: str) -> None:
        """After a run: e.g. 'right (from the file's header)'."""
        self._state, self._note = "run", words
        self._refresh()

    def show_refused(self, message: str) -> None:
        """A run refused for the hand (conflict, another bone): marked until the choice changes."""
        self._state, self._note = "refused", message
        self._refresh()

    def clear(self) -> None:
        self.auto, self.image, self._state, self._note = None, None, "none", ""
        self._refresh()

    def forget_run(self) -> None:
        """Back to what Run would do now (the words of the last run or refusal go)."""
        if self._state in ("run", "refused"):
            self._state = "auto" if self.auto is not None else "none"
        self._refresh()

    def _on_choice(self) -> None:
        self.forget_run()  # the last run's words were about the last run's choice

    def _refresh(self) -> None:
        text, tip, marked = self._words()
        self.source.value = text
        self.source.tooltip = tip or text
        self.source.visible = bool(text)
        self._mark(marked)

    def _words(self) -> tuple[str, str, bool]:
        """(the line, its tooltip, whether the control is marked)."""
        chosen, auto, image, state = self.requested(), self.auto, self.image, self._state
        if state == "run":
            return f"last run: {self._note}", "", False
        if state == "refused":
            return f"⚠ {self._note}", self._note, True
        if chosen is not None:
            text = f"{chosen} (you chose)"
            if image is not None and image.hand != chosen:
                return f"⚠ {text}, but the image shows {image.hand}: Run will refuse", image.reason, True
            if image is not None and auto is not None and auto.source == "header" and auto.hand != chosen:
                return f"{text}, as the image shows; the file's header says {auto.hand}", image.reason, False
            if auto is not None and auto.decided and auto.hand != chosen:
                return f"⚠ {text}, but the file's header says {auto.hand}", auto.reason, True
            return text, "", False
        if state == "looking":
            return "auto: looking for the hand…", "", False
        if state == "failed":
            return f"auto: could not look ({self._note})", self._note, False
        if auto is None:
            return "", "", False
        if auto.decided and image is not None and image.hand != auto.hand:
            return (f"⚠ auto: {decision_words(auto)}, but the image shows {image.hand}: Run will refuse",
                    image.reason, True)
        if auto.decided:
            return f"auto: {decision_words(auto)}", auto.reason, False
        return f"⚠ {ask_words(auto)}", auto.reason, True

    def _mark(self, marked: bool) -> None:
        self.marked = marked
        style = f"color: {MARK_COLOUR}; font-weight: bold;" if marked else ""
        self.source.native.setStyleSheet(style)
        self.choice.native.setStyleSheet(f"QComboBox {{ border: 2px solid {MARK_COLOUR}; }}" if marked else "")
