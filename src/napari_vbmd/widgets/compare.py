"""Compare two labels layers on a scan: metrics, vBMD under each, and a difference overlay.

The form is magicgui (layer choices follow the viewer); the comparison runs in a worker
(``_worker.WorkRunner``); the difference layer's colours are their own, distinct from the model's
mask and from masks opened from files (``napari_vbmd.layers``).
"""
from __future__ import annotations

import numpy as np
from magicgui import widgets as mw
from qtpy.QtWidgets import QHeaderView, QLabel, QPushButton, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget

from ..errors import VbmdError
from ..evaluation.compare import ADDED, MISSING, MaskComparison, compare_masks
from ..layers import ADDED_COLOUR, MISSING_COLOUR, layer_to_scan
from ._worker import WorkRunner, notify_error

NO_SCAN = "(no scan: metrics only)"
DIFFERENCE_LAYER = "difference (purple added, green missing)"


def _layer_scan(layer, kind: str):
    return layer_to_scan(np.asarray(layer.data), layer.metadata, scale=layer.scale, translate=layer.translate, kind=kind)


class CompareMasksWidget(QWidget):
    """Choose a scan and two labels layers; Compare shows the metrics and adds the difference layer."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.result: MaskComparison | None = None
        self.difference_layer = None

        layout = QVBoxLayout(self)
        self.image = mw.ComboBox(label="Scan", choices=self._image_choices)
        self.reference = mw.ComboBox(label="Reference", choices=self._labels_choices,
                                     tooltip="the mask taken as right (e.g. an expert's, a truth)")
        self.predicted = mw.ComboBox(label="Predicted", choices=self._labels_choices,
                                     tooltip="the mask compared with it (e.g. the model's)")
        self.form = mw.Container(widgets=[self.image, self.reference, self.predicted])
        from .workflow_run import compact

        for combo in (self.image, self.reference, self.predicted):
            compact(combo)
        layout.addWidget(self.form.native)
        self.compare_button = QPushButton("Compare")
        self.compare_button.clicked.connect(self.compare)
        layout.addWidget(self.compare_button)
        self.status_label = QLabel("Choose two labels layers.")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumWidth(10)
        layout.addWidget(self.status_label)
        self.table = QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["measure", "value"])
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.Stretch)  # never wider than the dock
        self.table.setWordWrap(True)
        layout.addWidget(self.table)
        legend = QLabel(
            f"<span style='color:{ADDED_COLOUR}'>■</span> added: predicted only &nbsp; "
            f"<span style='color:{MISSING_COLOUR}'>■</span> missing: reference only"
        )
        legend.setWordWrap(True)
        layout.addWidget(legend)
        self.runner = WorkRunner(self, label=self.status_label)

        for event in (self.viewer.layers.events.inserted, self.viewer.layers.events.removed,
                      self.viewer.layers.events.reordered):
            event.connect(self._refresh_choices)
        self._refresh_choices()

    # -- choices ----------------------------------------------------------------------------------
    def _layers_of(self, kind):
        return [layer for layer in self.viewer.layers if isinstance(layer, kind) and layer != self.difference_layer
                and not layer.name.startswith("difference (")]

    def _image_choices(self, widget=None):
        from napari.layers import Image

        return [(layer.name, layer.name) for layer in self._layers_of(Image)] + [(NO_SCAN, NO_SCAN)]

    def _labels_choices(self, widget=None):
        from napari.layers import Labels

        return [(layer.name, layer.name) for layer in self._layers_of(Labels)]

    def _refresh_choices(self, event=None) -> None:
        for combo in (self.image, self.reference, self.predicted):
            combo.reset_choices()
        labels = [name for name in self.reference.choices if name is not None]
        active = self.viewer.layers.selection.active
        if active is not None and active.name in self.image.choices and self.image.value == NO_SCAN:
            self.image.value = active.name
        if len(labels) > 1 and self.predicted.value == self.reference.value:
            self.predicted.value = next(name for name in labels if name != self.reference.value)

    # -- comparing --------------------------------------------------------------------------------
    def _inputs(self):
        labels = [name for name in self.reference.choices if name is not None]
        if len(labels) < 2:
            have = f"only {labels[0]!r} is open" if labels else "none is open"
            raise VbmdError(f"Compare needs two labels layers (masks) and {have}: open or make a second mask")
        ref_name, pred_name = self.reference.value, self.predicted.value
        if ref_name == pred_name:
            raise VbmdError(f"choose two different masks: Reference and Predicted are both {ref_name!r}")
        reference = _layer_scan(self.viewer.layers[ref_name], "mask")
        predicted = _layer_scan(self.viewer.layers[pred_name], "mask")
        image = None
        if self.image.value and self.image.value != NO_SCAN:
            image = _layer_scan(self.viewer.layers[self.image.value], "image")
        return reference, predicted, image

    def compare(self) -> None:
        """Start the comparison in a worker thread; the table fills when it is done."""
        try:
            reference, predicted, image = self._inputs()
        except VbmdError as exc:
            self.status_label.setText(f"Error: {exc}")
            notify_error(exc)
            return
        self.compare_button.setEnabled(False)
        self.runner.start(lambda progress, cancel: compare_masks(reference, predicted, image),
                          description="Comparing", on_result=self._show,
                          on_finished=lambda: self.compare_button.setEnabled(True))

    def _show(self, result: MaskComparison) -> None:
        from napari.utils.colormaps import DirectLabelColormap

        self.result = result
        rows = result.summary_rows()
        self.table.setRowCount(len(rows))
        for i, (name, value) in enumerate(rows):
            for j, text in enumerate((name, value)):
                item = QTableWidgetItem(text)
                item.setToolTip(text)
                self.table.setItem(i, j, item)
        self.table.resizeRowsToContents()
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
        self.runner.finish(f"{self.reference.value} vs {self.predicted.value}: Dice {result.metrics['dice']:.4f}")
