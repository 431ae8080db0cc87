"""Compare two labels layers on a scan: metrics, vBMD under each, and a difference overlay."""
from __future__ import annotations

import numpy as np
from qtpy.QtWidgets import (
    QComboBox,
    QFormLayout,
    QLabel,
    QPushButton,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from ..errors import VbmdError
from ..evaluation.compare import ADDED, MISSING, MaskComparison, compare_masks
from ..layers import layer_to_scan

NO_SCAN = "(no scan: metrics only)"
DIFFERENCE_LAYER = "difference (orange added, blue missing)"
ADDED_COLOUR = "#ff9100"  # orange: in the predicted mask only
MISSING_COLOUR = "#2979ff"  # blue: in the reference mask only


def _layer_scan(layer, kind: str):
    return layer_to_scan(np.asarray(layer.data), layer.metadata, scale=layer.scale, translate=layer.translate, kind=kind)


class CompareMasksWidget(QWidget):
    """Choose a scan and two labels layers; Compare shows the metrics and adds the difference layer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: MaskComparison | None = None
        self.difference_layer = None
        self._worker = None

        layout = QVBoxLayout(self)
        form = QFormLayout()
        self.image_combo = QComboBox()
        self.reference_combo = QComboBox()
        self.predicted_combo = QComboBox()
        form.addRow("Scan", self.image_combo)
        form.addRow("Reference", self.reference_combo)
        form.addRow("Predicted", self.predicted_combo)
        layout.addLayout(form)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        layout.addWidget(self.compare_button)
        self.status_label = QLabel("Choose two labels layers.")
        self.status_label.setWordWrap(True)
        layout.addWidget(self.status_label)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["measure", "value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setStretchLastSection(True)
        layout.addWidget(self.table)
        legend = QLabel(
            f"<span style='color:{ADDED_COLOUR}'>■</span> added: predicted only &nbsp; "
            f"<span style='color:{MISSING_COLOUR}'>■</span> missing: reference only"
        )
        layout.addWidget(legend)

        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.connect(self._refresh_choices)
        self._refresh_choices()

    # -- choices ----------------------------------------------------------------------------------
    def _layers_of(self, kind: str):
        return [layer for layer in self.viewer.layers if layer._type_string == kind
                and layer is not self.difference_layer and not layer.name.startswith(DIFFERENCE_LAYER)]

    def _refresh_choices(self, event=None) -> None:
        images = [layer.name for layer in self._layers_of("image")]
        labels = [layer.name for layer in self._layers_of("labels")]
        active = self.viewer.layers.selection.active
        preferred_image = active.name if active is not None and active.name in images else None
        self._fill(self.image_combo, images + [NO_SCAN], preferred_image)
        self._fill(self.reference_combo, labels, None)
        self._fill(self.predicted_combo, labels, labels[1] if len(labels) > 1 else None, avoid=self.reference_combo.currentText())

    @staticmethod
    def _fill(combo: QComboBox, names: list[str], preferred: str | None, avoid: str | None = None) -> None:
        current = combo.currentText()
        combo.blockSignals(True)
        combo.clear()
        combo.addItems(names)
        if current in names and current != avoid:
            combo.setCurrentText(current)
        elif preferred in names:
            combo.setCurrentText(preferred)
        combo.blockSignals(False)

    # -- comparing --------------------------------------------------------------------------------
    def _inputs(self):
        ref_name, pred_name = self.reference_combo.currentText(), self.predicted_combo.currentText()
        if not ref_name or not pred_name:
            raise VbmdError("choose a reference and a predicted labels layer")
        if ref_name == pred_name:
            raise VbmdError("reference and predicted are the same layer")
        reference = _layer_scan(self.viewer.layers[ref_name], "mask")
        predicted = _layer_scan(self.viewer.layers[pred_name], "mask")
        image_name = self.image_combo.currentText()
        image = None
        if image_name and image_name != NO_SCAN:
            image = _layer_scan(self.viewer.layers[image_name], "image")
        return reference, predicted, image

    def compare(self) -> None:
        """Start the comparison in a worker thread; the table fills when it is done."""
        from napari.qt.threading import thread_worker

        try:
            reference, predicted, image = self._inputs()
        except VbmdError as exc:
            self._error(str(exc))
            return
        self.compare_button.setEnabled(False)
        self.status_label.setText("Comparing…")
        worker = thread_worker(compare_masks, start_thread=False)(reference, predicted, image)
        worker.returned.connect(self._show)
        worker.errored.connect(lambda exc: self._error(str(exc) if isinstance(exc, VbmdError) else
                                                       f"{type(exc).__name__}: {exc}"))
        worker.finished.connect(lambda: self.compare_button.setEnabled(True))
        self._worker = worker
        worker.start()

    def _show(self, result: MaskComparison) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        self.result = result
        rows = result.summary_rows()
        self.table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            self.table.setItem(i, 0, QTableWidgetItem(name))
            self.table.setItem(i, 1, QTableWidgetItem(value))
        self.table.resizeColumnToContents(0)
        colormap = DirectLabelColormap(color_dict={None: "transparent", 0: "transparent",
                                                   ADDED: ADDED_COLOUR, MISSING: MISSING_COLOUR})
        if self.difference_layer is not None and self.difference_layer in self.viewer.layers:
            self.difference_layer.data = result.difference
            self.difference_layer.scale = result.grid.spacing
            self.difference_layer.translate = result.grid.origin
        else:
            self.difference_layer = self.viewer.add_labels(
                result.difference, name=DIFFERENCE_LAYER, scale=result.grid.spacing,
                translate=result.grid.origin, colormap=colormap, opacity=0.8,
            )
        self.status_label.setText(
            f"{self.reference_combo.currentText()} vs {self.predicted_combo.currentText()}: "
            f"Dice {result.metrics['dice']:.4f}"
        )

    def _error(self, message: str) -> None:
        self.status_label.setText(f"Error: {message}")
        self.compare_button.setEnabled(True)
        try:
            from napari.utils.notifications import show_error

            show_error(message)
        except Exception:  # noqa: BLE001 - the status label already says it
            pass
