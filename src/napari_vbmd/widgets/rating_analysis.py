"""The study owner's analysis widget: unblind and analyse a rating study, in a worker thread.

It needs the owner's mapping file given explicitly (never looked up in the study folder, which
raters may share), and writes its outputs beside that mapping, not into the raters' folder. The
table is the engine's (``rating.analysis.summary_rows``), the same lines ``vbmd study analyze``
prints.
"""
from __future__ import annotations

from pathlib import Path

from magicgui import widgets as mw
from qtpy.QtCore import Qt
from qtpy.QtWidgets import (
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import VbmdError
from ._worker import WorkRunner


def analysis_folder(mapping: str | Path) -> Path:
    """Where the owner's outputs go: beside the mapping, in ``analysis/``."""
    return Path(mapping).parent / "analysis"


class StudyAnalysisWidget(QWidget):
    """For the study's owner: unblind and analyse the answers (never part of the rating view)."""

    def __init__(self, napari_viewer=None, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.summary: dict | None = None
        layout = QVBoxLayout(self)
        self.study = mw.FileEdit(label="Study folder", mode="d")
        self.mapping = mw.FileEdit(label="Owner's mapping", mode="r", filter="mapping (*.json)",
                                   tooltip="the mapping file the study was created with (vbmd study create --mapping)")
        self.form = mw.Container(widgets=[self.study, self.mapping])
        layout.addWidget(self.form.native)
        note = QLabel("The mapping unblinds the study: keep it out of the raters' folder. The answers table, "
                      "summary and plot are written beside it, in analysis/.")
        note.setWordWrap(True)
        note.setMinimumWidth(10)
        layout.addWidget(note)
        self.analyze_button = QPushButton("Analyze")
        self.analyze_button.clicked.connect(self.analyze)
        layout.addWidget(self.analyze_button)
        self.status_label = QLabel("")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumWidth(10)
        layout.addWidget(self.status_label)
        self.bar = QProgressBar()
        self.bar.setVisible(False)
        layout.addWidget(self.bar)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["", "value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # never wider than the dock
        self.table.horizontalHeader().sectionResized.connect(lambda *_: self.table.resizeRowsToContents())
        self.table.setWordWrap(True)
        self.table.setMinimumHeight(200)
        layout.addWidget(self.table, 1)
        self.plot_label = QLabel()
        self.plot_label.setAlignment(Qt.AlignmentFlag.AlignCenter)
        layout.addWidget(self.plot_label)
        self.runner = WorkRunner(self, bar=self.bar, label=self.status_label)

    def analyze(self) -> None:
        from ..rating.analysis import analyze_study, summary_rows

        study = self.study.line_edit.value.strip()
        mapping = self.mapping.line_edit.value.strip()
        try:
            if not study:
                raise VbmdError("choose the study folder")
            if not mapping:
                raise VbmdError("choose the owner's mapping file: the analysis never looks for it in the study folder")
        except VbmdError as exc:
            self.status_label.setText(str(exc))
            from ._worker import notify_error

            notify_error(exc)
            return
        out = analysis_folder(mapping)

        def work(progress, cancel):
            summary = analyze_study(study, mapping_path=mapping, out_dir=out)
            return summary, summary_rows(summary)

        self.analyze_button.setEnabled(False)
        self.runner.start(work, description="Analysing the study", on_result=self._show,
                          on_finished=lambda: self.analyze_button.setEnabled(True))

    def _show(self, payload) -> None:
        from qtpy.QtGui import QPixmap

        summary, rows = payload
        self.summary = summary
        self.table.setRowCount(len(rows))
        for i, (what, value) in enumerate(rows):
            for j, text in enumerate((what, value)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
        self.runner.finish(f"Analysed {summary['n_rated']} of {summary['n_cases']} cases; outputs in "
                           f"{Path(summary['outputs']['summary']).parent}")
        pixmap = QPixmap(summary["outputs"]["plot"])
        if not pixmap.isNull():  # small enough to fit under the table at 1280 x 800, and never cropped
            pixmap = pixmap.scaledToWidth(min(340, pixmap.width()), Qt.TransformationMode.SmoothTransformation)
            self.plot_label.setPixmap(pixmap)
            self.plot_label.setMinimumHeight(pixmap.height())
