"""Step 2 of the workflow, Review: the figures and the per-slice plot, moving between slices and
flagged slices, the outline view, and the reviewer's verdicts per slice and for the case."""
from __future__ import annotations

import getpass

from magicgui import widgets as mw
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QCheckBox, QGridLayout, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from ._keys import key_of
from ._slice_plot import SlicePlot


def user_name() -> str:
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - no user name in this environment
        return ""


def _wrapping(text: str = "") -> QLabel:
    label = QLabel(text)
    label.setWordWrap(True)
    label.setMinimumWidth(10)
    return label


class ReviewSection(QWidget):
    def __init__(self, desk, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        row = QHBoxLayout()
        self.results_label = QLabel("—")
        self.results_label.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.results_label.setMinimumWidth(10)
        self.results_label.setWordWrap(True)  # a long value (the hand and its source) wraps in its cell
        row.addWidget(self.results_label, 1)
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("copy the figures, model, device, time and corrections to the clipboard "
                                    "(tab-separated, for a spreadsheet)")
        self.copy_button.clicked.connect(lambda: desk.copy_results())
        row.addWidget(self.copy_button, 0, Qt.AlignmentFlag.AlignTop)
        layout.addLayout(row)
        self.hand_label = _wrapping()  # the hand's evidence, and "check the hand side" when the flags say so
        self.hand_label.setTextFormat(Qt.TextFormat.RichText)
        self.hand_label.setVisible(False)
        layout.addWidget(self.hand_label)
        self.plot = SlicePlot(on_click=desk.go_to_slice)
        self.plot.setToolTip("area and mean density per slice; red dots: flagged slices; click to go to a slice")
        layout.addWidget(self.plot)

        grid = QGridLayout()
        self.prev_button = QPushButton("◀ slice")
        self.next_button = QPushButton("slice ▶")
        self.prev_flag_button = QPushButton("◀ flagged")
        self.next_flag_button = QPushButton("flagged ▶")
        self.prev_button.clicked.connect(lambda: desk.step_slice(-1))
        self.next_button.clicked.connect(lambda: desk.step_slice(1))
        self.prev_flag_button.clicked.connect(lambda: desk.next_flagged(backwards=True))
        self.next_flag_button.clicked.connect(lambda: desk.next_flagged())
        for i, button in enumerate((self.prev_button, self.next_button, self.prev_flag_button, self.next_flag_button)):
            grid.addWidget(button, i // 2, i % 2)
        self.outline_check = QCheckBox("Show the mask as an outline")
        self.outline_check.toggled.connect(desk.set_outline)
        grid.addWidget(self.outline_check, 2, 0, 1, 2)
        layout.addLayout(grid)
        self.slice_label = _wrapping()
        layout.addWidget(self.slice_label)

        self.reviewer = mw.LineEdit(label="Reviewer", value=user_name())
        self.comment = mw.LineEdit(label="Comment")
        self.comment.native.setPlaceholderText("optional, saved with the verdict")
        self.form = mw.Container(widgets=[self.reviewer, self.comment])
        self.form.margins = (0, 0, 0, 0)
        layout.addWidget(self.form.native)
        grid = QGridLayout()
        self.slice_ok_button = QPushButton("slice ✓ reviewed")
        self.slice_flag_button = QPushButton("slice ⚑ flag")
        self.case_ok_button = QPushButton("case ✓ reviewed")
        self.case_flag_button = QPushButton("case ⚑ flag")
        self.slice_ok_button.clicked.connect(lambda: desk.mark_slice("reviewed"))
        self.slice_flag_button.clicked.connect(lambda: desk.mark_slice("flagged"))
        self.case_ok_button.clicked.connect(lambda: desk.mark_case("reviewed"))
        self.case_flag_button.clicked.connect(lambda: desk.mark_case("flagged"))
        for i, button in enumerate((self.slice_ok_button, self.slice_flag_button, self.case_ok_button,
                                    self.case_flag_button)):
            grid.addWidget(button, i // 2, i % 2)
        layout.addLayout(grid)
        self.review_label = _wrapping()
        layout.addWidget(self.review_label)
        self.keys_label = _wrapping(
            f"Keys over the image, whichever layer is selected: {key_of('napari-vbmd:next_flagged')} / "
            f"{key_of('napari-vbmd:previous_flagged')} next / previous flagged slice, "
            f"{key_of('napari-vbmd:toggle_outline')} outline (napari shortcuts: Preferences › Shortcuts).")
        self.keys_label.setStyleSheet("color: gray")
        layout.addWidget(self.keys_label)
        layout.addStretch(1)

    @property
    def case_tools(self):
        return (self.copy_button, self.prev_button, self.next_button, self.prev_flag_button, self.next_flag_button,
                self.outline_check, self.slice_ok_button, self.slice_flag_button, self.case_ok_button,
                self.case_flag_button)

    def show_results(self, rows: list[tuple[str, str]]) -> None:
        if not rows:
            self.results_label.setText("—")
            return
        self.results_label.setText(
            "<table>" + "".join(f'<tr><td style="white-space: nowrap">{k}&nbsp;&nbsp;</td><td><b>{v}</b></td></tr>'
                               for k, v in rows) + "</table>")

    def show_hand(self, evidence: str, concern: str) -> None:
        """The image's evidence for the hand (small, grey) and a concern about it (marked), when any."""
        from html import escape

        from ._hand import MARK_COLOUR

        parts = []
        if concern:
            parts.append(f'<span style="color: {MARK_COLOUR}; font-weight: bold">⚠ {escape(concern, quote=False)}</span>')
        if evidence:
            parts.append(f'<span style="color: gray">Hand: {escape(evidence, quote=False)}</span>')
        self.hand_label.setText("<br>".join(parts))
        self.hand_label.setVisible(bool(parts))

    def clear(self) -> None:
        self.show_results([])
        self.show_hand("", "")
        self.plot.clear()
        self.slice_label.setText("")
        self.review_label.setText("")
