"""The "Segment & measure" dock widget: one-click segmentation and vBMD, slice review, correction
and export. A thin front end: the work is done by segmentation.pipeline, measure, review,
correction and export; long work runs in a napari worker thread with a progress bar and Cancel.
"""
from __future__ import annotations

import functools
import getpass
import logging
import os
import threading
import time
from pathlib import Path

import numpy as np
from napari.qt.threading import create_worker
from napari.utils import progress as napari_progress
from napari.utils.notifications import show_error, show_info
from qtpy.QtCore import QObject, Qt, QTimer, Signal
from qtpy.QtWidgets import (
    QApplication,
    QCheckBox,
    QComboBox,
    QDoubleSpinBox,
    QFileDialog,
    QFormLayout,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QMessageBox,
    QPushButton,
    QScrollArea,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from .. import correction
from ..correction import MaskVersions, changed_voxels
from ..errors import CancelledError, VbmdError
from ..export import ExportExistsError, export_case, save_training_pair
from ..layers import METADATA_KEY, layer_to_scan, native_if_lossless
from ..measure import measure_vbmd
from ..review import ReviewStore, flag_slices, next_slice, review_path
from ..scan import Scan
from ..segmentation.postprocess import MAX_BOUNDARY_BAND_MM

log = logging.getLogger(__name__)

MODEL_CHOICES = ("default", "unet2d", "unet3d", "classical", "checkpoint file")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
HAND_CHOICES = ("from header", "left", "right")
RANGE_CHOICES = ("whole scan", "slice range", "standard VOI")
RECOMPUTE_DELAY_MS = 400


def _reports_errors(method):
    """Slots show problems as napari notifications, never as a traceback dialog."""

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except VbmdError as exc:
            show_error(str(exc))
        except Exception as exc:  # a bug: say so in one line, keep the details in the log
            log.exception("napari-vbmd: %s failed", method.__name__)
            show_error(f"{method.__name__.strip('_')} failed: {type(exc).__name__}: {exc}")
        return None

    return wrapper


class _ProgressRelay(QObject):
    """Carries progress from the worker thread to the GUI thread (queued signal)."""

    changed = Signal(int, int, str)


def default_threads() -> int:
    """Torch threads for inference: all cores but one, which stays with the GUI."""
    return max(1, (os.cpu_count() or 2) - 1)


class SegmentMeasureWidget(QWidget):
    """Segment & measure, review, correct and export one case."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self._models: dict = {}
        self._models_lock = threading.Lock()
        self._worker = None
        self._measure_worker = None
        self._measure_pending = False
        self._cancel_event = threading.Event()
        self._progress_bar = None
        self._relay = _ProgressRelay()
        self._relay.changed.connect(self._on_progress)
        self.threads = default_threads()

        self.scan: Scan | None = None
        self.scan_layer = None
        self.labels_layer = None
        self.segmentation = None
        self.result = None
        self.d100_model: float | None = None
        self.versions: MaskVersions | None = None
        self.flags = []
        self.review: ReviewStore | None = None
        self.seconds: float | None = None
        self._measured: np.ndarray | None = None
        self._recorded: np.ndarray | None = None
        self._crop = None  # (box, probability crop, density crop, threshold, spacing) for the review flags
        self._paint_count = 0
        self._measured_signature = None

        self._recompute_timer = QTimer(self)
        self._recompute_timer.setSingleShot(True)
        self._recompute_timer.setInterval(RECOMPUTE_DELAY_MS)
        self._recompute_timer.timeout.connect(self._recompute)

        self._build()
        self.viewer.layers.events.inserted.connect(self._refresh_layers)
        self.viewer.layers.events.removed.connect(self._on_layer_removed)
        self.viewer.dims.events.point.connect(self._on_slice_changed)
        self._refresh_layers()
        self._enable_case_tools(False)

    # ------------------------------------------------------------------------------------------
    # layout
    # ------------------------------------------------------------------------------------------
    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self._scroll = scroll
        self.sections: dict[str, QGroupBox] = {}
        outer.addWidget(scroll)
        body = QWidget()
        scroll.setWidget(body)
        layout = QVBoxLayout(body)

        # -- segment ---------------------------------------------------------------------------
        box = QGroupBox("Segment && measure")
        self.sections["segment"] = box
        form = QFormLayout(box)
        self._segment_form = form
        self.scan_combo = QComboBox()
        form.addRow("Scan", self.scan_combo)
        self.model_combo = QComboBox()
        self.model_combo.addItems(MODEL_CHOICES)
        self.model_combo.currentTextChanged.connect(self._on_model_changed)
        form.addRow("Model", self.model_combo)
        row = QHBoxLayout()
        self.checkpoint_edit = QLineEdit()
        self.checkpoint_edit.setPlaceholderText("NAME.json or folder")
        self.checkpoint_button = QPushButton("…")
        self.checkpoint_button.setMaximumWidth(30)
        self.checkpoint_button.clicked.connect(lambda: self._browse_checkpoint())
        row.addWidget(self.checkpoint_edit)
        row.addWidget(self.checkpoint_button)
        self.checkpoint_row = QWidget()
        self.checkpoint_row.setLayout(row)
        row.setContentsMargins(0, 0, 0, 0)
        form.addRow("Checkpoint", self.checkpoint_row)
        self.device_combo = QComboBox()
        self.device_combo.addItems(DEVICE_CHOICES)
        form.addRow("Device", self.device_combo)
        self.hand_combo = QComboBox()
        self.hand_combo.addItems(HAND_CHOICES)
        form.addRow("Hand", self.hand_combo)
        self.band_spin = QDoubleSpinBox()
        self.band_spin.setDecimals(2)
        self.band_spin.setSingleStep(0.05)
        self.band_spin.setRange(-0.05, MAX_BOUNDARY_BAND_MM)
        self.band_spin.setSpecialValueText("the model's")  # shown at the minimum: use the checkpoint's band
        self.band_spin.setValue(self.band_spin.minimum())
        self.band_spin.setSuffix(" mm")
        self.band_spin.setToolTip("move the network's boundary within this band onto the scan's half-maximum edge; "
                                  "0 keeps the network's own boundary (the classical method snaps its own)")
        form.addRow("Boundary band", self.band_spin)
        self.range_combo = QComboBox()
        self.range_combo.addItems(RANGE_CHOICES)
        self.range_combo.currentTextChanged.connect(self._on_range_changed)
        form.addRow("Region", self.range_combo)
        row = QHBoxLayout()
        row.setContentsMargins(0, 0, 0, 0)
        self.first_spin, self.last_spin = QSpinBox(), QSpinBox()
        for spin in (self.first_spin, self.last_spin):
            spin.setRange(0, 100000)
        self.range_from_view = QPushButton("current →")
        self.range_from_view.setToolTip("first slice = the slice shown now; then move and press again for the last")
        self.range_from_view.clicked.connect(lambda: self._range_from_view())
        row.addWidget(self.first_spin)
        row.addWidget(QLabel("to"))
        row.addWidget(self.last_spin)
        row.addWidget(self.range_from_view)
        self.range_row = QWidget()
        self.range_row.setLayout(row)
        form.addRow("Slices", self.range_row)
        self.voi_spin = QDoubleSpinBox()
        self.voi_spin.setRange(0.5, 200.0)
        self.voi_spin.setValue(10.0)
        self.voi_spin.setSuffix(" mm")
        form.addRow("VOI length", self.voi_spin)
        row = QHBoxLayout()
        self.run_button = QPushButton("Run")
        self.run_button.clicked.connect(lambda: self.run())
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(lambda: self.cancel())
        row.addWidget(self.run_button)
        row.addWidget(self.cancel_button)
        form.addRow(row)
        self.status_label = QLabel("Choose a scan and press Run.")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumWidth(10)
        form.addRow(self.status_label)
        layout.addWidget(box)

        # -- results ---------------------------------------------------------------------------
        box = QGroupBox("Results")
        self.sections["results"] = box
        results = QVBoxLayout(box)
        self.results_label = QLabel("—")
        self.results_label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        results.addWidget(self.results_label)
        self.correction_label = QLabel("")
        self.correction_label.setWordWrap(True)
        results.addWidget(self.correction_label)
        self.copy_button = QPushButton("Copy to clipboard")
        self.copy_button.clicked.connect(lambda: self.copy_results())
        results.addWidget(self.copy_button)
        from ._slice_plot import SlicePlot

        self.plot = SlicePlot(on_click=self.go_to_slice)
        results.addWidget(self.plot)
        layout.addWidget(box)

        # -- review ----------------------------------------------------------------------------
        box = QGroupBox("Review")
        self.sections["review"] = box
        grid = QGridLayout(box)
        self.prev_button = QPushButton("◀ slice")
        self.next_button = QPushButton("slice ▶")
        self.prev_flag_button = QPushButton("◀ flagged")
        self.next_flag_button = QPushButton("flagged ▶")
        self.prev_button.clicked.connect(lambda: self.step_slice(-1))
        self.next_button.clicked.connect(lambda: self.step_slice(1))
        self.prev_flag_button.clicked.connect(lambda: self.next_flagged(backwards=True))
        self.next_flag_button.clicked.connect(lambda: self.next_flagged())
        for i, button in enumerate((self.prev_button, self.next_button, self.prev_flag_button, self.next_flag_button)):
            grid.addWidget(button, i // 2, i % 2)
        self.contour_check = QCheckBox("contour only (Shift+C); Shift+N / Shift+P: next / previous flagged")
        self.contour_check.toggled.connect(self.set_contour)
        grid.addWidget(self.contour_check, 2, 0, 1, 2)
        self.slice_label = QLabel("")
        self.slice_label.setWordWrap(True)
        grid.addWidget(self.slice_label, 3, 0, 1, 2)
        self.reviewer_edit = QLineEdit(_user())
        self.reviewer_edit.setPlaceholderText("reviewer")
        self.comment_edit = QLineEdit()
        self.comment_edit.setPlaceholderText("comment (optional)")
        grid.addWidget(self.reviewer_edit, 4, 0, 1, 1)
        grid.addWidget(self.comment_edit, 4, 1, 1, 1)
        self.slice_ok_button = QPushButton("slice ✓ reviewed")
        self.slice_flag_button = QPushButton("slice ⚑ flag")
        self.case_ok_button = QPushButton("case ✓ reviewed")
        self.case_flag_button = QPushButton("case ⚑ flag")
        self.slice_ok_button.clicked.connect(lambda: self.mark_slice("reviewed"))
        self.slice_flag_button.clicked.connect(lambda: self.mark_slice("flagged"))
        self.case_ok_button.clicked.connect(lambda: self.mark_case("reviewed"))
        self.case_flag_button.clicked.connect(lambda: self.mark_case("flagged"))
        for i, button in enumerate((self.slice_ok_button, self.slice_flag_button, self.case_ok_button,
                                    self.case_flag_button)):
            grid.addWidget(button, 5 + i // 2, i % 2)
        self.review_label = QLabel("")
        self.review_label.setWordWrap(True)
        grid.addWidget(self.review_label, 7, 0, 1, 2)
        layout.addWidget(box)

        # -- correct ---------------------------------------------------------------------------
        box = QGroupBox("Correct")
        self.sections["correct"] = box
        grid = QGridLayout(box)
        hint = QLabel("napari's paint, erase and fill tools work on the mask too; Ctrl+Z undoes any edit.")
        hint.setWordWrap(True)
        grid.addWidget(hint, 3, 0, 1, 2)
        self.fill_slice_button = QPushButton("Fill holes (slice)")
        self.fill_volume_button = QPushButton("Fill holes (all)")
        self.islands_button = QPushButton("Remove islands")
        self.smooth_button = QPushButton("Smooth contour")
        self.copy_next_button = QPushButton("Copy slice → next")
        self.interpolate_button = QPushButton("Interpolate from slice")
        self.interpolate_spin = QSpinBox()
        self.interpolate_spin.setRange(0, 100000)
        self.fill_slice_button.clicked.connect(lambda: self.correct("fill holes (slice)"))
        self.fill_volume_button.clicked.connect(lambda: self.correct("fill holes (all)"))
        self.islands_button.clicked.connect(lambda: self.correct("remove islands"))
        self.smooth_button.clicked.connect(lambda: self.correct("smooth contour"))
        self.copy_next_button.clicked.connect(lambda: self.correct("copy slice to next"))
        self.interpolate_button.clicked.connect(lambda: self.correct("interpolate"))
        grid.addWidget(self.fill_slice_button, 0, 0)
        grid.addWidget(self.fill_volume_button, 0, 1)
        grid.addWidget(self.islands_button, 1, 0)
        grid.addWidget(self.smooth_button, 1, 1)
        grid.addWidget(self.copy_next_button, 2, 0)
        row = QHBoxLayout()
        row.addWidget(self.interpolate_button)
        row.addWidget(self.interpolate_spin)
        grid.addLayout(row, 2, 1)
        layout.addWidget(box)

        # -- export ----------------------------------------------------------------------------
        box = QGroupBox("Export")
        self.sections["export"] = box
        form = QFormLayout(box)
        row = QHBoxLayout()
        self.export_dir_edit = QLineEdit()
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(lambda: self._browse_dir(self.export_dir_edit))
        row.addWidget(self.export_dir_edit)
        row.addWidget(browse)
        form.addRow("Folder", row)
        self.case_edit = QLineEdit()
        form.addRow("Case", self.case_edit)
        row = QHBoxLayout()
        self.aim_check = QCheckBox("AIM")
        self.aim_check.setChecked(True)
        self.nifti_check = QCheckBox("NIfTI")
        self.tiff_check = QCheckBox("TIFF")
        for check in (self.aim_check, self.nifti_check, self.tiff_check):
            row.addWidget(check)
        form.addRow("Mask as", row)
        self.export_button = QPushButton("Export mask + report")
        self.export_button.clicked.connect(lambda: self.export())
        form.addRow(self.export_button)
        row = QHBoxLayout()
        self.train_dir_edit = QLineEdit()
        browse = QPushButton("…")
        browse.setMaximumWidth(30)
        browse.clicked.connect(lambda: self._browse_dir(self.train_dir_edit))
        row.addWidget(self.train_dir_edit)
        row.addWidget(browse)
        form.addRow("Training folder", row)
        self.train_button = QPushButton("Save as training pair")
        self.train_button.clicked.connect(lambda: self.save_training_pair())
        form.addRow(self.train_button)
        layout.addWidget(box)
        layout.addStretch(1)

        self._on_model_changed(self.model_combo.currentText())
        self._on_range_changed(self.range_combo.currentText())

    def show_section(self, name: str) -> None:
        """Scroll the panel so that a section (segment, results, review, correct, export) is in view."""
        self._scroll.ensureWidgetVisible(self.sections[name], 0, 0)

    def _enable_case_tools(self, enabled: bool) -> None:
        for widget in (self.prev_button, self.next_button, self.prev_flag_button, self.next_flag_button,
                       self.contour_check, self.slice_ok_button, self.slice_flag_button, self.case_ok_button,
                       self.case_flag_button, self.fill_slice_button, self.fill_volume_button, self.islands_button,
                       self.smooth_button, self.copy_next_button, self.interpolate_button, self.export_button,
                       self.train_button, self.copy_button):
            widget.setEnabled(enabled)

    # ------------------------------------------------------------------------------------------
    # small slots
    # ------------------------------------------------------------------------------------------
    def _image_layers(self):
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3]

    def _refresh_layers(self, event=None) -> None:
        current = self.scan_combo.currentText()
        names = [layer.name for layer in self._image_layers()]
        self.scan_combo.blockSignals(True)
        self.scan_combo.clear()
        self.scan_combo.addItems(names)
        if current in names:
            self.scan_combo.setCurrentText(current)
        self.scan_combo.blockSignals(False)

    def _on_layer_removed(self, event=None) -> None:
        if self.labels_layer is not None and self.labels_layer not in self.viewer.layers:
            self.labels_layer = None
            self._enable_case_tools(False)
        self._refresh_layers()

    def _show_row(self, field: QWidget, visible: bool) -> None:
        field.setVisible(visible)
        label = self._segment_form.labelForField(field)
        if label is not None:
            label.setVisible(visible)

    def _on_model_changed(self, text: str) -> None:
        self._show_row(self.checkpoint_row, text == "checkpoint file")

    def _on_range_changed(self, text: str) -> None:
        self._show_row(self.range_row, text == "slice range")
        self._show_row(self.voi_spin, text == "standard VOI")

    def _browse_checkpoint(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Checkpoint", "", "napari-vbmd checkpoint (*.json)")
        if path:
            self.checkpoint_edit.setText(path)

    def _browse_dir(self, edit: QLineEdit) -> None:
        path = QFileDialog.getExistingDirectory(self, "Folder", edit.text())
        if path:
            edit.setText(path)

    def _range_from_view(self) -> None:
        z = self.current_slice()
        if z is None:
            return
        if self.first_spin.value() >= z or self.last_spin.value() > z:
            self.first_spin.setValue(z)
            self.last_spin.setValue(z)
        else:
            self.last_spin.setValue(z)

    # ------------------------------------------------------------------------------------------
    # segment & measure
    # ------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        return self._worker is not None

    def boundary_band_mm(self) -> float | None:
        """The band chosen in the widget (mm), or None for the model's own setting."""
        value = float(self.band_spin.value())
        return None if value < 0 else value

    def _model_spec(self) -> str:
        choice = self.model_combo.currentText()
        if choice == "checkpoint file":
            path = self.checkpoint_edit.text().strip()
            if not path:
                raise VbmdError("choose a checkpoint file (NAME.json) for the model")
            return path
        return choice

    def _load_model(self, spec: str, device: str):
        """A network, loaded once per (model, device) and reused by later runs."""
        if spec == "classical":
            return "classical"
        from ..segmentation.registry import load_model

        key = (spec, device)
        with self._models_lock:
            if key not in self._models:
                self._models[key] = load_model(spec, device)
            return self._models[key]

    @_reports_errors
    def run(self) -> None:
        if self.busy:
            raise VbmdError("a run is already going; cancel it first")
        layer = next((lay for lay in self._image_layers() if lay.name == self.scan_combo.currentText()), None)
        if layer is None:
            raise VbmdError("open a scan first (File > Open, or the phantom sample)")
        data, metadata, scale, translate = layer.data, dict(layer.metadata), tuple(layer.scale), tuple(layer.translate)
        spec = self._model_spec()
        device = self.device_combo.currentText()
        hand = {"from header": None}.get(self.hand_combo.currentText(), self.hand_combo.currentText())
        region = self.range_combo.currentText()
        slice_range = None
        voi_mm = None
        if region == "slice range":
            first, last = self.first_spin.value(), self.last_spin.value()
            if last < first:
                raise VbmdError(f"the slice range {first} to {last} is empty")
            slice_range = (first, last + 1)
        elif region == "standard VOI":
            voi_mm = float(self.voi_spin.value())
        band_mm = self.boundary_band_mm()
        self._cancel_event = threading.Event()
        cancel = self._cancel_event.is_set
        relay = self._relay.changed.emit

        def work():
            started = time.perf_counter()
            from ..segmentation.pipeline import segment
            from ..segmentation.preprocess import density_block

            # back to the scanner's integers where the layer's densities came from them, so the
            # figures are exactly those `vbmd measure` gives for the file
            scan = native_if_lossless(layer_to_scan(np.asarray(data), metadata, scale=scale, translate=translate,
                                                    kind="image"))

            model = self._load_model(spec, device)
            if cancel():
                raise CancelledError("cancelled")
            seg = segment(scan, model=model, device=device, hand=hand, slice_range=slice_range, voi_mm=voi_mm,
                          progress=lambda step, total, message: relay(step, total, message), cancel=cancel,
                          threads=self.threads, keep_probability=True, boundary_band_mm=band_mm)
            if cancel():
                raise CancelledError("cancelled")
            relay(0, 0, "measuring")
            result = measure_vbmd(scan, seg.mask)
            density = density_block(scan, seg.box.slices)
            crop = (seg.box, seg.probability, density, seg.threshold, scan.spacing)
            flags = _flags_on_crop(np.asarray(seg.mask.data), crop)
            if cancel():
                raise CancelledError("cancelled")
            return layer, scan, seg, result, flags, crop, time.perf_counter() - started

        self._progress_bar = napari_progress(total=0, desc=f"Segmenting {layer.name}")
        self.run_button.setEnabled(False)
        self.cancel_button.setEnabled(True)
        self.status_label.setText(f"Segmenting with {spec} on {device}…")
        self._worker = create_worker(
            work,
            _start_thread=False,
            _connect={"returned": self._on_segmented, "errored": self._on_run_error, "finished": self._on_run_done},
        )
        self._worker.start()

    def cancel(self) -> None:
        if self._worker is not None:
            self._cancel_event.set()
            self.status_label.setText("Cancelling…")

    def _on_progress(self, step: int, total: int, message: str) -> None:
        bar = self._progress_bar
        if bar is None:
            return
        if total > 0:
            bar.total = total
            bar.n = min(step, total)
        bar.set_description(message)
        bar.refresh()
        self.status_label.setText(message)

    def _on_run_error(self, exc) -> None:
        if isinstance(exc, CancelledError):
            self.status_label.setText("Cancelled: nothing was added.")
            show_info("segmentation cancelled; nothing was added")
        elif isinstance(exc, VbmdError):
            self.status_label.setText(str(exc))
            show_error(str(exc))
        else:
            log.error("napari-vbmd: segmentation failed", exc_info=exc)
            self.status_label.setText(f"failed: {exc}")
            show_error(f"segmentation failed: {type(exc).__name__}: {exc}")

    def _on_run_done(self) -> None:
        if self._progress_bar is not None:
            self._progress_bar.close()
            self._progress_bar = None
        self._worker = None
        self.run_button.setEnabled(True)
        self.cancel_button.setEnabled(False)

    @_reports_errors
    def _on_segmented(self, payload) -> None:
        layer, scan, seg, result, flags, crop, seconds = payload
        self.scan, self.scan_layer = scan, layer
        mask = np.asarray(seg.mask.data).astype(np.uint8)
        name = f"{self.scan_layer.name.replace(' (mg HA/cm3)', '')} MC2"
        meta = {METADATA_KEY: {**self.scan_layer.metadata.get(METADATA_KEY, {}), "kind": "mask",
                               "calibration": None}}
        self._measured = mask.copy()  # so that setting the layer's data does not trigger a re-measure
        previous = self.labels_layer
        if previous is not None and previous in self.viewer.layers and previous.data.shape == mask.shape:
            # a re-run on the same grid updates the layer: removing and adding one costs the GUI ~0.5 s
            previous.data = mask
            previous.scale, previous.translate = tuple(scan.spacing), tuple(scan.origin)
            previous.metadata = meta
            previous.name = name
            if hasattr(previous, "_reset_history"):  # the previous run's edits are not undoable into this one
                previous._reset_history()
        else:
            if previous is not None and previous in self.viewer.layers:
                self.viewer.layers.remove(previous)
            self.labels_layer = self.viewer.add_labels(mask, name=name, scale=tuple(scan.spacing),
                                                       translate=tuple(scan.origin), metadata=meta, opacity=0.5)
            self.labels_layer.events.paint.connect(self._on_paint)
            self.labels_layer.events.set_data.connect(self._on_set_data)
            self.labels_layer.bind_key("Shift-N", lambda layer: self.next_flagged(), overwrite=True)
            self.labels_layer.bind_key("Shift-P", lambda layer: self.next_flagged(backwards=True), overwrite=True)
            self.labels_layer.bind_key("Shift-C", lambda layer: self.contour_check.toggle(), overwrite=True)
        self.set_contour(self.contour_check.isChecked())
        self.segmentation, self.result, self.flags, self._crop, self.seconds = seg, result, flags, crop, seconds
        self.d100_model = result.d100_mg_ha_cm3
        self.versions = MaskVersions(mask, model=seg.model)
        self._recorded = mask.copy()
        self._measured_signature = self._edit_signature()
        self._recompute_timer.stop()  # the new layer's own set_data events: this mask is measured already
        case = Path(scan.source).name.split(".")[0] if scan.source else self.scan_layer.name.split(" ")[0]
        self.review = ReviewStore(case=case, scan=scan.source)
        if not self.case_edit.text():
            self.case_edit.setText(case)
        if not self.export_dir_edit.text() and scan.source:
            self.export_dir_edit.setText(str(Path(scan.source).parent))
        self._enable_case_tools(True)
        self.status_label.setText(
            f"Done in {seconds:.1f} s: {seg.model} on {seg.device}, hand {seg.hand} ({seg.hand_source}); "
            f"{len(flags)} slices flagged for review.")
        self._show_results()
        if flags:
            self.go_to_slice(flags[0].slice_index)
        elif result.profile.slice_index:
            self.go_to_slice(result.first_slice)

    # ------------------------------------------------------------------------------------------
    # results
    # ------------------------------------------------------------------------------------------
    def results_table(self) -> list[tuple[str, str]]:
        r, seg = self.result, self.segmentation
        if r is None:
            return []
        return [
            ("D100 (mg HA/cm³)", f"{r.d100_mg_ha_cm3:.1f}"),
            ("SD (mg HA/cm³)", f"{r.sd_mg_ha_cm3:.1f}"),
            ("Volume (mm³)", f"{r.volume_mm3:.1f}"),
            ("Slices", f"{r.n_slices} ({r.first_slice}–{r.last_slice})"),
            ("Mean slice area (mm²)", f"{r.mean_slice_area_mm2:.2f}"),
            ("Model", seg.model if seg else ""),
            ("Device", seg.device if seg else ""),
            ("Time (s)", f"{self.seconds:.1f}" if self.seconds is not None else ""),
        ]

    def _show_results(self) -> None:
        rows = self.results_table()
        self.results_label.setText(
            "<table>" + "".join(f"<tr><td>{k}&nbsp;&nbsp;</td><td><b>{v}</b></td></tr>" for k, v in rows) + "</table>")
        profile = self.result.profile
        self.plot.show_profile(profile.slice_index, profile.area_mm2, profile.density_mg_ha_cm3,
                               flagged=[f.slice_index for f in self.flags], current=self.current_slice())
        stats = self.correction_stats()
        if stats is not None and (stats.voxels_added or stats.voxels_removed):
            self.correction_label.setText(
                f"Correction: +{stats.voxels_added} / −{stats.voxels_removed} voxels; D100 "
                f"{stats.d100_before:.1f} → {stats.d100_after:.1f} mg HA/cm³ ({stats.d100_change:+.1f})")
        else:
            self.correction_label.setText("Correction: none yet")
        self._update_slice_label()

    def correction_stats(self):
        if self.versions is None or self.labels_layer is None or self.result is None:
            return None
        return self.versions.stats(np.asarray(self.labels_layer.data), self.d100_model, self.result.d100_mg_ha_cm3)

    def copy_results(self) -> None:
        text = "\n".join(f"{k}\t{v}" for k, v in self.results_table())
        stats = self.correction_stats()
        if stats is not None:
            text += f"\nVoxels added\t{stats.voxels_added}\nVoxels removed\t{stats.voxels_removed}"
        QApplication.clipboard().setText(text)
        show_info("results copied to the clipboard")

    # ------------------------------------------------------------------------------------------
    # slices and review
    # ------------------------------------------------------------------------------------------
    def current_slice(self) -> int | None:
        scan = self.scan
        if scan is None:
            layer = next((lay for lay in self._image_layers() if lay.name == self.scan_combo.currentText()), None)
            if layer is None:
                return None
            origin, spacing, n = layer.translate[-3], layer.scale[-3], layer.data.shape[-3]
        else:
            origin, spacing, n = scan.origin[0], scan.spacing[0], scan.shape[0]
        z = (self.viewer.dims.point[-3] - origin) / spacing
        return int(np.clip(round(z), 0, n - 1))

    def go_to_slice(self, z: int) -> None:
        if self.scan is None:
            return
        z = int(np.clip(z, 0, self.scan.shape[0] - 1))
        self.viewer.dims.set_point(self.viewer.dims.ndim - 3, self.scan.origin[0] + z * self.scan.spacing[0])

    def step_slice(self, delta: int) -> None:
        z = self.current_slice()
        if z is not None:
            self.go_to_slice(z + delta)

    def next_flagged(self, backwards: bool = False) -> None:
        z = next_slice(self.flags, self.current_slice() or 0, backwards=backwards)
        if z is None:
            show_info("no slice is flagged for review")
            return
        self.go_to_slice(z)

    def _on_slice_changed(self, event=None) -> None:
        z = self.current_slice()
        if z is None or self.result is None:
            return
        self.plot.set_current(z)
        self._update_slice_label()

    def _update_slice_label(self) -> None:
        z = self.current_slice()
        if z is None or self.review is None:
            return
        flag = next((f for f in self.flags if f.slice_index == z), None)
        text = flag.describe() if flag else f"slice {z}: no automatic flag"
        entry = self.review.slices.get(z)
        if entry:
            text += f" — marked {entry['status']}" + (f": {entry['comment']}" if entry.get("comment") else "")
        self.slice_label.setText(text)
        counts = self.review.counts()
        self.review_label.setText(
            f"{len(self.flags)} slices flagged automatically; {counts['reviewed']} marked reviewed, "
            f"{counts['flagged']} flagged; case: {self.review.status}")

    def set_contour(self, contour: bool) -> None:
        if self.labels_layer is not None:
            self.labels_layer.contour = 2 if contour else 0

    @_reports_errors
    def mark_slice(self, status: str) -> None:
        z = self.current_slice()
        self.review.mark_slice(z, status, self.comment_edit.text().strip(), self.reviewer_edit.text().strip())
        self.comment_edit.clear()
        self._update_slice_label()

    @_reports_errors
    def mark_case(self, status: str) -> None:
        self.review.mark_case(status, self.comment_edit.text().strip(), self.reviewer_edit.text().strip())
        self.comment_edit.clear()
        self._update_slice_label()

    # ------------------------------------------------------------------------------------------
    # correction
    # ------------------------------------------------------------------------------------------
    def _sync_manual_edits(self) -> None:
        """Note paint strokes and undos made since the last note, as one 'manual edit'."""
        if self.versions is None or self.labels_layer is None:
            return
        current = np.asarray(self.labels_layer.data) != 0
        if self._recorded is not None and not np.array_equal(current, self._recorded != 0):
            self.versions.record("manual edit (paint/erase/undo)", self._recorded, current,
                                 self.reviewer_edit.text().strip())
            self._recorded = current.astype(np.uint8)

    @_reports_errors
    def correct(self, operation: str) -> None:
        layer = self.labels_layer
        if layer is None:
            raise VbmdError("segment a scan first: there is no mask to correct")
        self._sync_manual_edits()
        z = self.current_slice()
        before = np.asarray(layer.data)
        if operation == "fill holes (slice)":
            after = correction.fill_holes(before, z)
        elif operation == "fill holes (all)":
            after = correction.fill_holes(before)
        elif operation == "remove islands":
            after = correction.remove_islands(before)
        elif operation == "smooth contour":
            after = correction.smooth_contour(before, z)
        elif operation == "copy slice to next":
            after = correction.copy_slice(before, z)
        elif operation == "interpolate":
            after = correction.interpolate_slices(before, self.interpolate_spin.value(), z)
        else:
            raise VbmdError(f"unknown correction {operation!r}")
        indices, _ = changed_voxels(before != 0, after)
        if not indices[0].size:
            show_info(f"{operation}: nothing to change")
            return
        with layer.block_history():  # one undo step
            layer.data_setitem(indices, after[indices].astype(layer.data.dtype))
        self.versions.record(operation, before, after, self.reviewer_edit.text().strip(), z)
        self._recorded = after.astype(np.uint8)
        self._schedule_recompute()

    def _edit_signature(self):
        """Changes with every edit, undo and redo, and costs nothing to compute (napari emits
        set_data on every slice change too, and comparing whole masks there would slow stepping)."""
        layer = self.labels_layer
        undo, redo = getattr(layer, "_undo_history", None), getattr(layer, "_redo_history", None)
        if undo is None or redo is None:
            return None  # unknown napari internals: always compare the masks
        return self._paint_count, len(undo), len(redo)

    def _on_paint(self, event=None) -> None:
        self._paint_count += 1
        self._schedule_recompute()

    def _on_set_data(self, event=None) -> None:
        signature = self._edit_signature()
        if signature is None or signature != self._measured_signature:
            self._schedule_recompute()

    def _schedule_recompute(self, event=None) -> None:
        if self.labels_layer is not None and self.scan is not None:
            self._recompute_timer.start()

    def _recompute(self) -> None:
        """Measure the edited mask again, in a worker, unless it has not changed."""
        if self.labels_layer is None or self.scan is None:
            return
        if self._measure_worker is not None:
            self._measure_pending = True
            return
        signature = self._edit_signature()
        current = np.asarray(self.labels_layer.data) != 0
        if self._measured is not None and np.array_equal(current, self._measured != 0):
            self._measured_signature = signature
            return
        self._sync_manual_edits()
        mask = current.astype(np.uint8)
        scan, crop = self.scan, self._crop

        def work():
            result = measure_vbmd(scan, mask)
            return mask, result, _flags_on_crop(mask, crop)

        self._measured_signature = signature

        self.status_label.setText("Measuring the corrected mask…")
        self._measure_worker = create_worker(
            work, _start_thread=False,
            _connect={"returned": self._on_remeasured, "errored": self._on_measure_error,
                      "finished": self._on_measure_done})
        self._measure_worker.start()

    def _on_remeasured(self, payload) -> None:
        mask, result, flags = payload
        self._measured = mask
        self.result, self.flags = result, flags
        self.status_label.setText("Measured the corrected mask.")
        self._show_results()

    def _on_measure_error(self, exc) -> None:
        message = str(exc) if isinstance(exc, VbmdError) else f"{type(exc).__name__}: {exc}"
        self.status_label.setText(f"Cannot measure the corrected mask: {message}")
        self.results_label.setText(f"<i>{message}</i>")

    def _on_measure_done(self) -> None:
        self._measure_worker = None
        if self._measure_pending:
            self._measure_pending = False
            self._recompute()

    @property
    def measuring(self) -> bool:
        return self._measure_worker is not None or self._recompute_timer.isActive()

    # ------------------------------------------------------------------------------------------
    # export
    # ------------------------------------------------------------------------------------------
    def _confirm_overwrite(self, paths) -> bool:
        names = "\n".join(str(p.name) for p in paths)
        answer = QMessageBox.question(self, "Overwrite the earlier export?",
                                      f"These files exist already:\n{names}\n\nOverwrite them?",
                                      QMessageBox.Yes | QMessageBox.No, QMessageBox.No)
        return answer == QMessageBox.Yes

    def _final_measured(self):
        mask = (np.asarray(self.labels_layer.data) != 0).astype(np.uint8)
        if self._measured is None or not np.array_equal(mask, self._measured != 0):
            self.result = measure_vbmd(self.scan, mask)
            self._measured = mask
            self._show_results()
        return mask, self.result

    @_reports_errors
    def export(self):
        if self.labels_layer is None:
            raise VbmdError("segment a scan first: there is nothing to export")
        folder = self.export_dir_edit.text().strip()
        if not folder:
            raise VbmdError("choose an export folder")
        formats = [f for f, check in (("aim", self.aim_check), ("nifti", self.nifti_check),
                                      ("tiff", self.tiff_check)) if check.isChecked()]
        if not formats:
            raise VbmdError("choose at least one mask format (AIM, NIfTI or TIFF)")
        self._sync_manual_edits()
        mask, result = self._final_measured()
        stats = self.correction_stats()
        kwargs = dict(original_mask=self.versions.original, model=self.segmentation.model,
                      device=self.segmentation.device, review=self.review, reviewer=self.reviewer_edit.text().strip(),
                      stats=stats, provenance=self.versions.provenance(), seconds=self.seconds, formats=formats)
        case = self.case_edit.text().strip()
        try:
            written = export_case(folder, case, self.scan, mask, result, **kwargs)
        except ExportExistsError as exc:
            if not self._confirm_overwrite(exc.paths):
                show_info("export not written: the earlier export is kept")
                return None
            written = export_case(folder, case, self.scan, mask, result, overwrite=True, **kwargs)
        show_info(f"exported {len(written)} files to {folder}")
        self.status_label.setText(f"Exported {', '.join(p.name for p in written.values())}")
        return written

    @_reports_errors
    def save_training_pair(self):
        if self.labels_layer is None:
            raise VbmdError("segment a scan first: there is no mask to save")
        folder = self.train_dir_edit.text().strip()
        if not folder:
            raise VbmdError("choose a training folder")
        self._sync_manual_edits()
        mask = (np.asarray(self.labels_layer.data) != 0).astype(np.uint8)
        case = self.case_edit.text().strip()
        try:
            written = save_training_pair(folder, case, self.scan, mask, provenance=self.versions.provenance())
        except ExportExistsError as exc:
            if not self._confirm_overwrite(exc.paths):
                show_info("training pair not written: the earlier one is kept")
                return None
            written = save_training_pair(folder, case, self.scan, mask, provenance=self.versions.provenance(),
                                         overwrite=True)
        show_info(f"saved training pair {case} to {folder}")
        return written

    def review_file(self) -> Path | None:
        folder = self.export_dir_edit.text().strip()
        return review_path(folder, self.case_edit.text().strip()) if folder else None


def _flags_on_crop(mask: np.ndarray, crop) -> list:
    """Review flags computed on the segmentation's bone crop (probability and density live there)."""
    from ..review import SliceFlag

    box, probability, density, threshold, spacing = crop
    sub = np.asarray(mask)[box.slices]
    flags = flag_slices(sub, probability=probability, density=density, threshold=threshold, spacing=spacing)
    return [SliceFlag(f.slice_index + box.z0, f.reasons, f.details) for f in flags]


def _user() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in this environment
        return ""
