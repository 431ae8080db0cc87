"""Rating studies in napari: the blinded rating dock widget and the owner's analysis widget.

The rating widget shows nothing but the scan and two outlines named "Contour 1" and "Contour 2";
layers are built from arrays (no file names, no metadata), their colours, names and drawing order
come from ``napari_vbmd.rating.session`` which never reads the owner's mapping. The analysis lives
in a separate widget for the study's owner.
"""
from __future__ import annotations

import numpy as np
from qtpy.QtCore import Qt
from qtpy.QtGui import QFontDatabase, QKeySequence
from qtpy.QtWidgets import (
    QComboBox,
    QFileDialog,
    QFormLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QShortcut,
    QVBoxLayout,
    QWidget,
)

from ..errors import VbmdError
from ..rating.session import CHOICES, RatingSession
from ..rating.study import load_study

CHOICE_KEYS = {"contour_1": ("1",), "contour_2": ("2",), "equal": ("0", "=")}
CONFIDENCE_ITEMS = ["not given", "1 - unsure", "2", "3", "4", "5 - sure"]


def _notify_error(message: str) -> None:
    try:
        from napari.utils.notifications import show_error

        show_error(message)
    except Exception:  # noqa: BLE001 - a notification is a courtesy, the status label says it too
        pass


class RatingWidget(QWidget):
    """Blinded rating: open a study, give your name, choose the better contour case by case."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session: RatingSession | None = None
        self._layers: list = []
        self._worker = None
        self.loading = False  # a case is being read; no answer is taken meanwhile

        layout = QVBoxLayout(self)
        setup = QGroupBox("Study")
        form = QFormLayout(setup)
        folder_row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("study folder")
        self.browse_button = QPushButton("Browse...")
        self.browse_button.clicked.connect(self._browse)
        folder_row.addWidget(self.folder_edit)
        folder_row.addWidget(self.browse_button)
        form.addRow("Folder", folder_row)
        self.rater_edit = QLineEdit()
        self.rater_edit.setPlaceholderText("your name")
        form.addRow("Rater", self.rater_edit)
        self.start_button = QPushButton("Start / resume rating")
        self.start_button.clicked.connect(self.start)
        form.addRow(self.start_button)
        layout.addWidget(setup)

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
        layout.addWidget(self.status_label)
        layout.addStretch(1)

        self._shortcuts = []
        for choice, keys in CHOICE_KEYS.items():
            for key in keys:
                shortcut = QShortcut(QKeySequence(key), self)
                # Application-wide so the keys work while the canvas has focus; text boxes still
                # take typed digits (they claim the key first through ShortcutOverride).
                shortcut.setContext(Qt.ApplicationShortcut)
                shortcut.activated.connect(lambda c=choice: self._shortcut_choice(c))
                self._shortcuts.append(shortcut)
        self._refresh()

    # -- starting -------------------------------------------------------------------------------
    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open rating study")
        if folder:
            self.folder_edit.setText(folder)

    def start(self) -> None:
        try:
            study = load_study(self.folder_edit.text().strip())
            self.session = RatingSession(study, self.rater_edit.text())
        except VbmdError as exc:
            self._error(str(exc))
            return
        self.folder_edit.setEnabled(False)
        self.rater_edit.setEnabled(False)
        self.browse_button.setEnabled(False)
        self.start_button.setEnabled(False)
        done = self.session.n_answered
        self.status_label.setText(
            f"Welcome back: {done} case(s) already rated." if done else "Ready."
        )
        self._show_current()

    # -- showing a case -------------------------------------------------------------------------
    def _clear_layers(self) -> None:
        for layer in self._layers:
            if layer in self.viewer.layers:
                self.viewer.layers.remove(layer)
        self._layers = []

    @staticmethod
    def _prepare_case(session: RatingSession):
        """Off the GUI thread: read and check the files, density, display range, the slice to open on."""
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
        return display, data, (lo, hi if hi > lo else lo + 1), int(middle)

    def _show_current(self) -> None:
        """Load the current case in a worker thread; answers are refused until it is on screen."""
        self._clear_layers()
        session = self.session
        if session is None or session.case_id is None:
            self._refresh()
            return
        from napari.qt.threading import create_worker

        self.loading = True
        self._refresh()
        worker = create_worker(self._prepare_case, session, _start_thread=False, _ignore_errors=True)
        worker.returned.connect(self._display_case)
        worker.errored.connect(self._load_failed)
        self._worker = worker
        worker.start()

    def _load_failed(self, exc) -> None:
        self.loading = False
        self._error(str(exc) if isinstance(exc, VbmdError) else f"cannot show this case: {exc}")
        self._refresh()

    def _display_case(self, prepared) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        display, data, contrast, middle = prepared
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
        self.viewer.reset_view()
        self.viewer.dims.set_point(0, scan.origin[0] + middle * scan.spacing[0])
        answer = session.current_answer()
        self.confidence_combo.setCurrentIndex(answer["confidence"] if answer and answer["confidence"] else 0)
        self.comment_edit.setText(answer["comment"] if answer else "")
        session.start_timer()  # time spent counts from the moment the case is on screen
        self.loading = False
        self._refresh()

    def _refresh(self) -> None:
        session = self.session
        active = session is not None and session.case_id is not None and not self.loading
        for choice, button in self.choice_buttons.items():
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
            return
        self.progress_bar.setRange(0, session.n_cases)
        self.progress_bar.setValue(session.n_answered)
        if session.case_id is None:
            self.progress_label.setText(f"All {session.n_cases} cases are rated. Thank you!")
        elif self.loading:
            self.progress_label.setText(f"Case {session.index + 1} of {session.n_cases}: loading ...")
        else:
            self.progress_label.setText(
                f"Case {session.index + 1} of {session.n_cases} ({session.n_answered} rated)"
            )

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
        self.status_label.setText(message)
        _notify_error(message)


class StudyAnalysisWidget(QWidget):
    """For the study's owner: unblind and analyse the answers (never part of the rating view)."""

    def __init__(self, napari_viewer=None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.summary: dict | None = None
        layout = QVBoxLayout(self)
        form = QFormLayout()
        row = QHBoxLayout()
        self.folder_edit = QLineEdit()
        self.folder_edit.setPlaceholderText("study folder")
        browse = QPushButton("Browse...")
        browse.clicked.connect(self._browse)
        row.addWidget(self.folder_edit)
        row.addWidget(browse)
        form.addRow("Study", row)
        self.mapping_edit = QLineEdit()
        self.mapping_edit.setPlaceholderText("default: STUDY/owner/mapping.json")
        form.addRow("Mapping", self.mapping_edit)
        layout.addLayout(form)
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.clicked.connect(self.analyze)
        layout.addWidget(self.analyze_button)
        self.output = QPlainTextEdit()
        self.output.setReadOnly(True)
        self.output.setLineWrapMode(QPlainTextEdit.NoWrap)
        self.output.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        self.output.setMinimumHeight(220)
        layout.addWidget(self.output)
        self.plot_label = QLabel()
        self.plot_label.setAlignment(Qt.AlignCenter)
        layout.addWidget(self.plot_label)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Open rating study")
        if folder:
            self.folder_edit.setText(folder)

    def analyze(self) -> None:
        import io

        from ..cli._output import print_table
        from ..cli.study import _fmt_prop
        from ..rating.analysis import analyze_study

        try:
            summary = analyze_study(self.folder_edit.text().strip(), mapping_path=self.mapping_edit.text().strip() or None)
        except VbmdError as exc:
            self.output.setPlainText(str(exc))
            _notify_error(str(exc))
            return
        self.summary = summary
        rows = [("cases rated", f"{summary['n_rated']} of {summary['n_cases']} by {summary['n_raters']} rater(s)")]
        groups = [(f"rater {n}", d) for n, d in summary["per_rater"].items()] + [("pooled", summary["pooled"])]
        for label, data in groups:
            rows.append((f"{label}: decided / ties", f"{data['n_decided']} / {data['ties']}"))
            for source, stats in data["sources"].items():
                rows.append((f"{label}: {source}", _fmt_prop(stats)))
            for stats in data["bias"].values():
                rows.append((f"{label}: chose {stats['chose']}", _fmt_prop(stats)))
        agreement = summary["agreement"]
        if agreement and agreement.get("kappa") is not None:
            rows.append((f"{agreement['method']} kappa", f"{agreement['kappa']:.3f} ({agreement['n_common_cases']} cases)"))
        rows.extend(summary["outputs"].items())
        buffer = io.StringIO()
        print_table(rows, file=buffer)
        self.output.setPlainText(buffer.getvalue())
        from qtpy.QtGui import QPixmap

        pixmap = QPixmap(summary["outputs"]["plot"])
        if not pixmap.isNull():
            self.plot_label.setPixmap(pixmap.scaledToWidth(min(480, pixmap.width()), Qt.SmoothTransformation))
