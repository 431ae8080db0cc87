"""Step 3 of the workflow, Correct: the correction tools, what the corrections changed, and the
audit trail of every operation (tools, paint strokes, undo and redo)."""
from __future__ import annotations

from qtpy.QtGui import QColor
from qtpy.QtWidgets import QGridLayout, QHBoxLayout, QLabel, QListWidget, QPushButton, QSpinBox, QVBoxLayout, QWidget

TOOL_BUTTONS = (
    ("Fill holes (slice)", "fill holes (slice)", "fill enclosed background in the slice shown"),
    ("Fill holes (all)", "fill holes (all)", "fill enclosed background in every slice"),
    ("Remove islands", "remove islands", "keep the largest connected piece of the mask (3-D)"),
    ("Smooth contour", "smooth contour", "smooth the outline of the slice shown (spurs and corners go)"),
    ("Copy slice → next", "copy slice to next", "the slice shown's mask replaces the next slice's"),
    ("Erase lower slices", "erase lower slices",
     "erase the mask on every slice numbered below the slice shown, which stays (a mask carried across the joint)"),
    ("Erase higher slices", "erase higher slices",
     "erase the mask on every slice numbered above the slice shown, which stays (a mask carried across the joint)"),
)


def trail_line(entry: dict) -> str:
    """One operation of the trail, for people: 'smooth contour · slice 31 · +12 / −40 voxels · ann'."""
    slices = entry["slices"]
    where = (f"slice {slices[0]}" if len(slices) == 1 else
             f"slices {slices[0]}–{slices[-1]} ({len(slices)})" if slices else "")
    parts = [entry["operation"], where, f"+{entry['added']} / −{entry['removed']} voxels", entry.get("by") or ""]
    text = " · ".join(p for p in parts if p)
    return text + (" (undone)" if entry.get("undone") else "")


class CorrectSection(QWidget):
    def __init__(self, desk, parent=None):
        super().__init__(parent)
        layout = QVBoxLayout(self)
        hint = QLabel("napari's paint, erase and fill tools work on the mask; Ctrl+Z undoes any edit. Every "
                      "edit, undo and redo is recorded below and exported with the mask.")
        hint.setWordWrap(True)
        hint.setMinimumWidth(10)
        layout.addWidget(hint)
        grid = QGridLayout()
        self.tool_buttons: dict[str, QPushButton] = {}
        for i, (text, operation, tip) in enumerate(TOOL_BUTTONS):
            button = QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, op=operation: desk.correct(op))
            self.tool_buttons[operation] = button
            grid.addWidget(button, i // 2, i % 2)
        row = QHBoxLayout()
        self.interpolate_button = QPushButton("Interpolate to here from slice")
        self.interpolate_button.setToolTip("fill the slices between this slice and the slice shown from their shapes")
        self.interpolate_button.clicked.connect(lambda: desk.correct("interpolate"))
        self.interpolate_spin = QSpinBox()
        self.interpolate_spin.setRange(0, 100000)
        row.addWidget(self.interpolate_button)
        row.addWidget(self.interpolate_spin)
        grid.addLayout(row, (len(TOOL_BUTTONS) + 1) // 2, 0, 1, 2)
        layout.addLayout(grid)
        self.correction_label = QLabel("")
        self.correction_label.setWordWrap(True)
        self.correction_label.setMinimumWidth(10)
        layout.addWidget(self.correction_label)
        layout.addWidget(QLabel("Audit trail (newest last):"))
        self.trail = QListWidget()
        self.trail.setMinimumHeight(120)
        self.trail.setWordWrap(True)
        layout.addWidget(self.trail, 1)

    @property
    def case_tools(self):
        return (*self.tool_buttons.values(), self.interpolate_button)

    def show_trail(self, operations: list[dict], earlier_versions: list[dict]) -> None:
        self.trail.clear()
        for version in earlier_versions:
            self.trail.addItem(f"earlier version kept ({version['reason']}): {version['voxels_added']} added / "
                               f"{version['voxels_removed']} removed, {len(version['operations'])} operations")
        for entry in operations:
            self.trail.addItem(trail_line(entry))
            if entry.get("undone") or entry["kind"] != "edit":
                self.trail.item(self.trail.count() - 1).setForeground(QColor("gray"))
        self.trail.scrollToBottom()

    def clear(self) -> None:
        self.trail.clear()
        self.correction_label.setText("")
