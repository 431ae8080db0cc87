"""The blinded rating dock widget: a rater goes through a study case by case.

The viewer shows nothing but the scan and two outlines named "Contour 1" and "Contour 2"; layers
are built from arrays (no file names, no metadata), their colours, names and drawing order come
from ``napari_vbmd.rating.session``, which never reads the owner's mapping. Every case opens
framed on the contours (their bounding box over all slices, with a margin: the same rule for
every case), and Q / W show one contour alone. The widget refuses to start while the owner's key
to the sources sits in the study folder. The owner's analysis is a separate widget
(``rating_analysis``).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
from magicgui import widgets as mw
from qtpy.QtCore import Qt
from qtpy.QtGui import QKeySequence
from qtpy.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QShortcut,
    QVBoxLayout,
    QWidget,
)

from ..errors import VbmdError
from ..rating.session import CHOICES, RatingSession
from ..rating.study import MAPPING_FILE, load_study
from . import _keys
from ._worker import WorkRunner, notify_error

CHOICE_KEYS = {"contour_1": ("1",), "contour_2": ("2",), "equal": ("0", "=")}
CONFIDENCE_ITEMS = ["not given", "1 - unsure", "2", "3", "4", "5 - sure"]
FRAME_MARGIN = 0.25  # of the contours' extent, on every side
FRAME_MIN_MM = 4.0  # a framed view is never narrower than this


def owner_files_in(folder: str | Path) -> list[Path]:
    """Files in a study folder that unblind a rater: the owner's mapping and analysis outputs."""
    folder = Path(folder)
    found = [folder / MAPPING_FILE] if (folder / MAPPING_FILE).is_file() else []
    analysis = folder / Path(MAPPING_FILE).parent / "analysis"
    if analysis.is_dir():
        found += sorted(p for p in analysis.rglob("*") if p.is_file())
    return found


def contour_frame(scan, masks) -> tuple[tuple[float, float], tuple[float, float]]:
    """(centre, size) in mm (y, x) of the contours' bounding box over all slices, with the margin."""
    union = np.zeros(scan.shape[1:], bool)
    for mask in masks:
        union |= np.asarray(mask).any(axis=0)
    if not union.any():
        union[:] = True
    ys, xs = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    centre, size = [], []
    for axis, (lo, hi) in enumerate(((ys[0], ys[-1] + 1), (xs[0], xs[-1] + 1))):
        spacing, origin = scan.spacing[axis + 1], scan.origin[axis + 1]
        centre.append(origin + spacing * ((lo + hi) / 2 - 0.5))
        size.append(max((hi - lo) * spacing * (1 + 2 * FRAME_MARGIN), FRAME_MIN_MM))
    return (centre[0], centre[1]), (size[0], size[1])


class RatingWidget(QWidget):
    """Blinded rating: open a study, give your name, choose the better contour case by case."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: RatingSession | None = None
        self._layers: list = []
        self._frame = None
        self.alone: int | None = None  # which contour is shown alone (0 / 1), None: both
        self.loading = False  # a case is being read; no answer is taken meanwhile

        layout = QVBoxLayout(self)
        self.folder = mw.FileEdit(label="Study folder", mode="d")
        self.rater = mw.LineEdit(label="Rater")
        self.rater.native.setPlaceholderText("your name")
        self.form = mw.Container(widgets=[self.folder, self.rater])
        layout.addWidget(self.form.native)
        self.start_button = QPushButton("Start / resume rating")
        self.start_button.clicked.connect(self.start)
        layout.addWidget(self.start_button)

        self.progress_label = QLabel("No study open.")
        self.progress_bar = QProgressBar()
        self.progress_bar.setFormat("%v of %m rated")
        layout.addWidget(self.progress_label)
        layout.addWidget(self.progress_bar)

        self.question = QLabel("Scroll through all slices. Which contour outlines the bone better?")
        self.question.setWordWrap(True)
        layout.addWidget(self.question)
        self.choice_buttons: dict[str, QPushButton] = {}
        for choice in CHOICES:
            button = QPushButton()
            button.setCheckable(True)
            button.clicked.connect(lambda _=False, c=choice: self.choose(c))
            self.choice_buttons[choice] = button
            layout.addWidget(button)

        show = QHBoxLayout()
        show.addWidget(QLabel("Show:"))
        self.show_buttons = QButtonGroup(self)
        for index, text in enumerate(("both", "Contour 1 [Q]", "Contour 2 [W]")):
            button = QPushButton(text)
            button.setCheckable(True)
            button.setChecked(index == 0)
            button.clicked.connect(lambda _=False, i=index: self._set_alone(None if i == 0 else i - 1))
            self.show_buttons.addButton(button, index)
            show.addWidget(button)
        self.frame_button = QPushButton("Frame")
        self.frame_button.setToolTip("frame the view on the contours again")
        self.frame_button.clicked.connect(lambda: self.frame())
        show.addWidget(self.frame_button)
        layout.addLayout(show)

        extra = QFormLayout()
        self.confidence_combo = QComboBox()
        self.confidence_combo.addItems(CONFIDENCE_ITEMS)
        extra.addRow("Confidence (optional)", self.confidence_combo)
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("optional")
        extra.addRow("Comment", self.comment_edit)
        layout.addLayout(extra)

        nav = QHBoxLayout()
        self.previous_button = QPushButton("< Previous")
        self.previous_button.clicked.connect(self.go_previous)
        self.next_button = QPushButton("Next >")
        self.next_button.clicked.connect(self.go_next)
        nav.addWidget(self.previous_button)
        nav.addWidget(self.next_button)
        layout.addLayout(nav)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumWidth(10)
        layout.addWidget(self.status_label)
        layout.addStretch(1)
        self.loader = WorkRunner(self)

        self._shortcuts = []
        for choice, keys in CHOICE_KEYS.items():
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                # Application-wide so the keys work while the canvas has focus; text boxes still
                # take typed digits (they claim the key first through ShortcutOverride).
                shortcut.setContext(Qt.ShortcutContext.ApplicationShortcut)
                shortcut.activated.connect(lambda c=choice: self._shortcut_choice(c))
                self._shortcuts.append(shortcut)
        _keys.register(self, "rating")
        self._refresh()

    # -- starting -------------------------------------------------------------------------------
    def start(self) -> None:
        folder = self.folder.line_edit.value.strip()
        try:
            if not folder:
                raise VbmdError("choose the study folder")
            leaks = owner_files_in(folder)
            if leaks:
                raise VbmdError(
                    f"this study folder holds the owner's key to the sources ({leaks[0].relative_to(folder)}): "
                    "rating would not be blind. Ask the study's owner to move it out of the folder, then start again")
            study = load_study(folder)
            self.session = RatingSession(study, self.rater.value)
        except VbmdError as exc:
            self._error(str(exc))
            return
        for w in (self.folder, self.rater):
            w.enabled = False
        self.start_button.setEnabled(False)
        done = self.session.n_answered
        self.status_label.setText(f"Welcome back: {done} case(s) already rated." if done else "Ready.")
        self._show_current()

    # -- showing a case -------------------------------------------------------------------------
    def _clear_layers(self) -> None:
        for layer in self._layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._layers = []

    @staticmethod
    def _prepare_case(session: RatingSession):
        """Off the GUI thread: read and check the files, density, display range, slice and frame."""
        display = session.load_case()
        scan = display.scan
        try:
            data = scan.density()
        except VbmdError:
            data = scan.data
        sample = np.asarray(data[:: max(1, data.shape[0] // 16)])
        lo, hi = (float(v) for v in np.percentile(sample, [0.5, 99.9]))
        contoured = np.flatnonzero(np.any([mask.any(axis=(1, 2)) for _, mask in display.contours], axis=0))
        middle = (contoured[0] + contoured[-1]) // 2 if contoured.size else scan.shape[0] // 2
        frame = contour_frame(scan, [mask for _, mask in display.contours])
        return display, data, (lo, hi if hi > lo else lo + 1), int(middle), frame

    def _show_current(self) -> None:
        """Load the current case in a worker thread; answers are refused until it is on screen."""
        self._clear_layers()
        session = self.session
        if session is None or session.case_id is None:
            self._refresh()
            return
        self.loading = True
        self._refresh()
        self.loader.start(lambda progress, cancel: self._prepare_case(session), description="Reading the case",
                          on_result=self._display_case, on_error=self._load_failed)

    def _load_failed(self, exc) -> None:
        self.loading = False
        self.status_label.setText(str(exc) if isinstance(exc, VbmdError) else f"cannot show this case: {exc}")
        self._refresh()

    def _display_case(self, prepared) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        display, data, contrast, middle, frame = prepared
        session = self.session
        scan = display.scan
        geometry = {"scale": tuple(scan.spacing), "translate": tuple(scan.origin)}
        self._layers.append(self.viewer.add_image(data, name="Scan", colormap="gray", contrast_limits=contrast,
                                                  **geometry))
        for shown, mask in display.contours:  # bottom first
            colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent", 1: shown.colour_hex})
            layer = self.viewer.add_labels(mask, name=shown.name, colormap=colormap, opacity=1.0, **geometry)
            layer.contour = 1
            layer.editable = False
            self._layers.append(layer)
        self.viewer.layers.selection.active = self._layers[0]
        self.viewer.dims.ndisplay = 2
        self.viewer.dims.set_point(0, scan.origin[0] + middle * scan.spacing[0])
        self._frame = frame
        self.frame()
        self._set_alone(None)
        answer = session.current_answer()
        self.confidence_combo.setCurrentIndex(answer["confidence"] if answer and answer["confidence"] else 0)
        self.comment_edit.setText(answer["comment"] if answer else "")
        session.start_timer()  # time spent counts from the moment the case is on screen
        self.loading = False
        self._refresh()

    def frame(self) -> None:
        """Centre the view on the contours and zoom so that their bounding box (plus margin) fills it."""
        if self._frame is None or not self._layers:
            return
        (cy, cx), (height, width) = self._frame
        camera = self.viewer.scene.camera
        canvas_h, canvas_w = self.viewer.canvas.size
        camera.center = (camera.center[0], cy, cx)
        camera.zoom = min(canvas_h / height, canvas_w / width)

    def _contour_layers(self):
        by_name = {layer.name: layer for layer in self._layers[1:]}
        return [by_name.get(name) for name in ("Contour 1", "Contour 2")]

    def show_alone(self, index: int) -> None:
        """Show Contour ``index + 1`` alone; asked again, show both (the keys Q and W)."""
        if self.session is None or self.loading or not self._layers:
            return
        self._set_alone(None if self.alone == index else index)

    def _set_alone(self, index: int | None) -> None:
        self.alone = index
        for i, layer in enumerate(self._contour_layers()):
            if layer is not None:
                layer.visible = index is None or index == i
        self.show_buttons.button(0 if index is None else index + 1).setChecked(True)

    def _refresh(self) -> None:
        session = self.session
        active = session is not None and session.case_id is not None and not self.loading
        for button in (*self.choice_buttons.values(), *self.show_buttons.buttons(), self.frame_button):
            button.setEnabled(active)
        for w in (self.confidence_combo, self.comment_edit):
            w.setEnabled(active)
        self.next_button.setEnabled(bool(active and session.current_answer()))
        self.previous_button.setVisible(session is None or session.study.allow_back)
        self.previous_button.setEnabled(bool(session and session.can_go_back and not self.loading))
        shown = session.shown() if active else None  # colours named only once the case is on screen
        labels = {"contour_1": "Contour 1 is better  [1]", "contour_2": "Contour 2 is better  [2]",
                  "equal": "Equally good  [0]"}
        answer = session.current_answer() if active else None
        for index, choice in enumerate(("contour_1", "contour_2")):
            button = self.choice_buttons[choice]
            if shown:
                colour = shown[index]
                button.setText(f"{colour.name} ({colour.colour}) is better  [{index + 1}]")
                button.setStyleSheet(f"QPushButton {{ border-left: 8px solid {colour.colour_hex}; }}")
            else:
                button.setText(labels[choice])
                button.setStyleSheet("")
        self.choice_buttons["equal"].setText(labels["equal"])
        for choice, button in self.choice_buttons.items():
            button.setChecked(bool(answer and answer["choice"] == choice))
        if session is None:
            self.progress_label.setText("No study open.")
            self.progress_bar.setRange(0, 1)
            self.progress_bar.setValue(0)
            self.progress_bar.setFormat("")
            return
        self.progress_bar.setFormat("%v of %m rated")
        self.progress_bar.setRange(0, session.n_cases)
        self.progress_bar.setValue(session.n_answered)
        if session.case_id is None:
            self.progress_label.setText(f"All {session.n_cases} cases are rated. Thank you!")
        elif self.loading:
            self.progress_label.setText(f"Case {session.index + 1} of {session.n_cases}: loading ...")
        else:
            self.progress_label.setText(f"Case {session.index + 1} of {session.n_cases} ({session.n_answered} rated)")

    # -- answering ------------------------------------------------------------------------------
    def _confidence(self) -> int | None:
        index = self.confidence_combo.currentIndex()
        return index if index > 0 else None

    def _shortcut_choice(self, choice: str) -> None:
        from qtpy.QtWidgets import QApplication

        if QApplication.focusWidget() is self.confidence_combo:
            return  # a digit typed to pick a confidence must not answer the case
        if self.session is not None and self.session.case_id is not None and self.isVisible():
            self.choose(choice)

    def choose(self, choice: str) -> None:
        if self.session is None or self.session.case_id is None or self.loading:
            return
        try:
            self.session.answer(choice, self._confidence(), self.comment_edit.text())
        except (VbmdError, OSError) as exc:
            self._error(f"answer NOT saved: {exc}")
            self._refresh()
            return
        self.status_label.setText("Saved. Press Next when ready.")
        self._refresh()

    def _save_notes_if_changed(self) -> bool:
        answer = self.session.current_answer()
        if answer is None:
            return True
        if answer["confidence"] == self._confidence() and answer["comment"] == self.comment_edit.text():
            return True
        try:
            self.session.answer(answer["choice"], self._confidence(), self.comment_edit.text())
        except (VbmdError, OSError) as exc:
            self._error(f"answer NOT saved: {exc}")
            return False
        return True

    def go_next(self) -> None:
        if self.session is None or self.loading or not self._save_notes_if_changed():
            return
        try:
            self.session.next()
        except VbmdError as exc:
            self._error(str(exc))
            return
        self.status_label.setText("")
        self._show_current()

    def go_previous(self) -> None:
        if self.session is None or self.loading or not self._save_notes_if_changed():
            return
        try:
            self.session.previous()
        except VbmdError as exc:
            self._error(str(exc))
            return
        self._show_current()

    def _error(self, message: str) -> None:
        self.status_label.setText(message[:1].upper() + message[1:])
        notify_error(message)
