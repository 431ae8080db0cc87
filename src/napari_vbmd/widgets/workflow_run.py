"""Step 1 of the workflow, Run: the scan and the settings of a run (a magicgui form), Run and Cancel.

When a scan is chosen its hand is looked for in a worker (the file's header, else the image:
1.3 s of CPU on a 1536 x 1536 x 110 field, benchmarks/bench_hand_look.py) and shown in the Hand
control; when neither decides it, the control is marked, a notification asks for the hand, and Run
refuses until left or right is chosen.

A file that does not say what its values mean (a TIFF, a NIfTI, a DICOM series without a density
calibration) or how large its voxels are shows a Values row and a Voxel size row under Scan: the
person says it there (never guessed; recorded with the result, like `--units/--slope/--intercept` and
`--spacing` on the command line), and Run refuses until it is said.
"""
from __future__ import annotations

import numpy as np
from magicgui import widgets as mw
from napari.utils.notifications import show_warning
from qtpy.QtWidgets import QAbstractSpinBox, QComboBox, QSizePolicy, QVBoxLayout, QWidget

from ..errors import VbmdError
from ..layers import METADATA_KEY, layer_spacing_known, layer_to_scan, native_if_lossless
from ..scan import UNIT_DENSITY, apply_user_calibration, apply_user_spacing
from ..segmentation.postprocess import MAX_BOUNDARY_BAND_MM
from ..session import RunSettings
from ._hand import HandControl
from ._worker import WorkRunner

MODEL_CHOICES = ("default", "unet2d", "unet3d", "classical", "checkpoint file")
DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")
RANGE_CHOICES = ("whole scan", "slice range", "standard VOI")
MODELS_BAND = -0.05  # the band control's minimum: "the model's own"
NOT_GIVEN, DENSITY_VALUES, LINEAR_VALUES = "not given", "mg HA/cm³", "value × slope + intercept"
VALUES_CHOICES = (NOT_GIVEN, DENSITY_VALUES, LINEAR_VALUES)
SAID_IN_FORM = "the Run form's Voxel size"


def scan_maker(layer, native: bool = True, word: dict | None = None):
    """A function that rebuilds ``layer``'s scan (in a worker thread): the scanner's integers where the
    layer's densities came from them (``native``), so the figures are exactly those `vbmd measure` gives.
    ``word``: what the person said about a file that does not say it (``spacing``, ``units``, ``slope``,
    ``intercept``), applied as the command line's options are."""
    data, metadata = np.asarray(layer.data), dict(layer.metadata)
    scale, translate = tuple(layer.scale), tuple(layer.translate)
    word = dict(word or {})

    def make():
        scan = layer_to_scan(data, metadata, scale=scale, translate=translate, kind="image")
        scan = apply_user_spacing(scan, word.get("spacing"), said_by=SAID_IN_FORM)
        scan = apply_user_calibration(scan, units=word.get("units"), slope=word.get("slope"),
                                      intercept=word.get("intercept"))
        return native_if_lossless(scan) if native else scan

    return make


def adopt_word(layer, scan, word: dict) -> None:
    """After a run: the layer keeps what the person said about it (the form shows it again when the
    layer is chosen), and a voxel size given in the form becomes the layer's scale, so the scan and its
    mask are drawn on one grid; the name loses "(voxel size unknown)"."""
    if not word:
        return
    meta = dict(layer.metadata.get(METADATA_KEY) or {})
    meta["said"] = {k: (list(v) if isinstance(v, tuple) else v) for k, v in word.items()}
    if "spacing" in word:
        header = dict(meta.get("header") or {})
        header.update(spacing_known=True, spacing_source=scan.header.get("spacing_source", "user"))
        header.pop("spacing_note", None)
        meta.update(header=header, spacing=list(scan.spacing))
        layer.scale = tuple(scan.spacing)
        layer.name = layer.name.replace(" (voxel size unknown)", "")
    layer.metadata = {**layer.metadata, METADATA_KEY: meta}


def file_says_values(layer) -> bool:
    """Whether the layer's file says what its values mean (a calibration, or densities already)."""
    meta = layer.metadata.get(METADATA_KEY) or {}
    return meta.get("calibration") is not None or meta.get("layer_unit", meta.get("unit")) == UNIT_DENSITY


def look_for_hand(scan, progress=None, cancel=None):
    """(what auto gives: the header's hand, else the image's; what the image shows when it was looked
    at). A whole-hand field whose header names the hand is looked at too, as the run will (it refuses
    a hand the image contradicts), so the control can say so before Run."""
    from ..segmentation.focus import is_whole_hand_field
    from ..segmentation.hand import detect_hand, resolve_hand

    decision = resolve_hand(scan, "auto", progress=progress, cancel=cancel)
    if decision.source == "header" and is_whole_hand_field(scan):
        return decision, detect_hand(scan, progress=progress, cancel=cancel)
    return decision, (decision if decision.source == "image" or not decision.decided else None)


def scan_name(layer) -> str:
    """The layer's name without what napari-vbmd's reader adds ("scan.aim (mg HA/cm3)" -> "scan.aim",
    "scan.tif (voxel size unknown)" -> "scan.tif")."""
    return layer.name.replace(" (mg HA/cm3)", "").replace(" (voxel size unknown)", "")


def compact(widget) -> None:
    """Let a combo box shrink with the dock instead of growing with its longest item."""
    native = getattr(widget, "native", widget)
    combos = [native] if isinstance(native, QComboBox) else native.findChildren(QComboBox)
    for combo in combos:
        combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        combo.setMinimumContentsLength(8)


class RunSection(QWidget):
    """The form; the workflow widget reads ``settings()`` and ``scan_layer()`` when Run is pressed."""

    def __init__(self, image_layers, current_slice, on_hand=None, parent=None):
        super().__init__(parent)
        self._image_layers = image_layers
        self._current_slice = current_slice
        self._on_hand = on_hand  # called with the layer once its hand is known (decided or not)
        self.hand_runner = WorkRunner(self)
        self._hand_layer = None  # the layer whose hand the control shows (or is looking for)
        self._hand_data = None  # that layer's data then: a decision is reused only for the same data
        self._hand_word = None  # and what the person had said about it (spacing, values) then
        self._looking_at = None  # (layer, data, word) of the look in progress
        self.scan = mw.ComboBox(label="Scan", choices=self._scan_choices, nullable=True,
                                tooltip="the image layer to segment (in mg HA/cm³ when the file is calibrated)")
        self.values = mw.ComboBox(label="Values", choices=VALUES_CHOICES, value=NOT_GIVEN,
                                  tooltip="this file does not say what its values mean: say it here (recorded "
                                          "with the result; nothing is assumed)")
        self.slope = mw.FloatSpinBox(label="Slope", min=-1e6, max=1e6, step=0.001, value=1.0,
                                     tooltip="density (mg HA/cm³) = value × slope + intercept")
        self.slope.native.setDecimals(6)
        self.intercept = mw.FloatSpinBox(label="Intercept", min=-1e5, max=1e5, step=1.0, value=0.0,
                                         tooltip="mg HA/cm³; density = value × slope + intercept")
        self.intercept.native.setDecimals(3)
        self.voxel_sizes = [mw.FloatSpinBox(min=0.0, max=100.0, step=0.001, value=0.0, tooltip=f"{axis} (mm)")
                            for axis in ("z", "y", "x")]
        for size in self.voxel_sizes:
            size.native.setDecimals(4)
            size.native.setSpecialValueText("?")
            size.native.setButtonSymbols(QAbstractSpinBox.ButtonSymbols.NoButtons)  # three fit a narrow dock
            size.native.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Fixed)
        self.voxel = mw.Container(label="Voxel size (mm)", layout="horizontal", labels=False, widgets=self.voxel_sizes,
                                  tooltip="z, y, x: this file does not state its voxel size; give it here")
        self.voxel.margins = (0, 0, 0, 0)
        for size in self.voxel_sizes:  # napari's style sheet gives spin boxes a minimum width too wide for three
            size.native.setStyleSheet("QDoubleSpinBox { min-width: 36px; }")
        self.needs_values = self.needs_spacing = False  # the chosen scan's file says neither (own state: a
        # hidden dock's widgets are all invisible, so visibility cannot tell)
        self.model = mw.ComboBox(label="Model", choices=MODEL_CHOICES, value="default",
                                 tooltip="default: the bundled model; classical: no network; "
                                         "checkpoint file: a NAME.json from vbmd train")
        self.checkpoint = mw.FileEdit(label="Checkpoint", mode="r", filter="napari-vbmd checkpoint (*.json)")
        self.device = mw.ComboBox(label="Device", choices=DEVICE_CHOICES, value="auto")
        self.hand = HandControl()
        self.band = mw.FloatSpinBox(label="Boundary band (mm)", min=MODELS_BAND, max=MAX_BOUNDARY_BAND_MM,
                                    step=0.05, value=MODELS_BAND,
                                    tooltip="move the network's boundary within this band onto the scan's "
                                            "half-maximum edge; 0 keeps the network's own boundary")
        self.band.native.setDecimals(2)
        self.band.native.setSpecialValueText("the model's")
        self.region = mw.ComboBox(label="Region", choices=RANGE_CHOICES, value="whole scan")
        self.first = mw.SpinBox(min=0, max=100000)
        self.last = mw.SpinBox(min=0, max=100000)
        self.from_view = mw.PushButton(text="current →",
                                       tooltip="first slice = the slice shown now; move on and press again for the last")
        self.slices = mw.Container(label="Slices", layout="horizontal", labels=False,
                                   widgets=[self.first, mw.Label(value="to"), self.last, self.from_view])
        self.slices.margins = (0, 0, 0, 0)
        self.voi = mw.FloatSpinBox(label="VOI length (mm)", min=0.5, max=200.0, value=10.0)
        self.form = mw.Container(widgets=[self.scan, self.values, self.slope, self.intercept, self.voxel, self.model,
                                          self.checkpoint, self.device, self.hand, self.band, self.region, self.slices,
                                          self.voi])
        for widget in (self.scan, self.values, self.model, self.device, self.region, self.hand):
            compact(widget)
        self.run_button = mw.PushButton(text="Run")
        self.cancel_button = mw.PushButton(text="Cancel")
        self.buttons = mw.Container(layout="horizontal", labels=False, widgets=[self.run_button, self.cancel_button])
        self.buttons.margins = (0, 0, 0, 0)

        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        layout.addWidget(self.buttons.native)
        layout.addStretch(1)

        self.model.changed.connect(self._on_model)
        self.scan.changed.connect(lambda *_: self._on_scan())
        self.values.changed.connect(lambda *_: self._on_word())
        for control in (self.slope, self.intercept, *self.voxel_sizes):  # looked for again once a number is in
            control.changed.connect(lambda *_: self._on_word(look=False))
            control.native.editingFinished.connect(self.look_for_hand)
        self.region.changed.connect(self._on_region)
        self.from_view.changed.connect(self._range_from_view)
        self._on_model(self.model.value)
        self._on_region(self.region.value)
        self._show_word_controls()

    # -- the form ------------------------------------------------------------------------------------
    def _scan_choices(self, widget=None):
        return [(layer.name, layer) for layer in self._image_layers()]

    def refresh_scans(self) -> None:
        self.scan.reset_choices()
        layers = [choice for choice in self.scan.choices if choice is not None]
        if self.scan.value is None and layers:
            self.scan.value = layers[0]

    def select_scan(self, layer) -> bool:
        for _, value in self._scan_choices():
            if value == layer:
                self.scan.value = value
                return True
        return False

    def scan_layer(self):
        return self.scan.value

    # -- what the file does not say ----------------------------------------------------------------
    def _on_scan(self) -> None:
        self._restore_word(self.scan.value)
        self.refresh_word()
        self.look_for_hand()

    def refresh_word(self) -> None:
        """Show the Values and Voxel size rows as far as the chosen layer's file (or a run since) leaves
        them unsaid."""
        layer = self.scan.value
        self.needs_values = layer is not None and not file_says_values(layer)
        self.needs_spacing = layer is not None and not layer_spacing_known(layer.metadata, layer.scale)
        self._show_word_controls()

    def _restore_word(self, layer) -> None:
        """What was said about this layer before, or nothing: a word is never carried to another scan."""
        said = ((layer.metadata.get(METADATA_KEY) or {}).get("said") or {}) if layer is not None else {}
        with self.values.changed.blocked():
            self.values.value = (DENSITY_VALUES if said.get("units") == UNIT_DENSITY
                                 else LINEAR_VALUES if "slope" in said else NOT_GIVEN)
        self.slope.value, self.intercept.value = float(said.get("slope", 1.0)), float(said.get("intercept", 0.0))
        for size, value in zip(self.voxel_sizes, said.get("spacing") or (0.0, 0.0, 0.0)):
            size.value = float(value)

    def _on_word(self, look: bool = True) -> None:
        self._show_word_controls()
        if look:
            self.look_for_hand()

    def _show_word_controls(self) -> None:
        self.values.visible = self.needs_values
        self.slope.visible = self.intercept.visible = self.needs_values and self.values.value == LINEAR_VALUES
        self.voxel.visible = self.needs_spacing

    def missing_word(self, short: bool = False) -> str:
        """What Run still needs to be told about the chosen scan ('' when nothing)."""
        missing = []
        if self.needs_spacing and not all(size.value > 0 for size in self.voxel_sizes):
            missing.append("voxel size" if short else "its voxel size (Voxel size: z, y, x in mm)")
        if self.needs_values and self.values.value == NOT_GIVEN:
            missing.append("values" if short
                           else "what its values are (Values: mg HA/cm³, or value × slope + intercept)")
        return " and ".join(missing)

    def user_word(self) -> dict:
        """What the person said about the chosen scan, for :func:`scan_maker`; refuses while something
        the file does not say is not said either."""
        layer = self.scan.value
        missing = self.missing_word()
        if missing:
            raise VbmdError(f"{scan_name(layer)}: the file does not state {missing}; give "
                            f"{'them' if ' and ' in missing else 'it'} in the Run form")
        word = {}
        if self.needs_spacing:
            word["spacing"] = tuple(float(size.value) for size in self.voxel_sizes)
        if self.needs_values:
            if self.values.value == DENSITY_VALUES:
                word["units"] = UNIT_DENSITY
            else:
                if self.slope.value == 0:
                    raise VbmdError(f"the slope for {scan_name(layer)}'s values is 0: every voxel would read the "
                                    "same density")
                word["slope"], word["intercept"] = float(self.slope.value), float(self.intercept.value)
        return word

    def _on_model(self, value) -> None:
        self.checkpoint.visible = value == "checkpoint file"

    def _on_region(self, value) -> None:
        self.slices.visible = value == "slice range"
        self.voi.visible = value == "standard VOI"

    def _range_from_view(self, *_) -> None:
        z = self._current_slice()
        if z is None:
            return
        if self.first.value >= z or self.last.value > z:
            self.first.value = self.last.value = z
        else:
            self.last.value = z

    def boundary_band_mm(self) -> float | None:
        """The band chosen (mm), or None for the model's own setting."""
        value = float(self.band.value)
        return None if value < 0 else value

    def model_spec(self) -> str:
        if self.model.value == "checkpoint file":
            path = self.checkpoint.line_edit.value.strip()
            if not path:
                raise VbmdError("choose a checkpoint file (NAME.json) for the model")
            return path
        return self.model.value

    # -- the hand ------------------------------------------------------------------------------------
    def look_for_hand(self) -> None:
        """Resolve the chosen scan's hand (header, else image) in a worker and show it in the control."""
        layer = self.scan.value
        if layer is None:
            self._hand_layer = self._hand_data = self._hand_word = None
            self.hand.clear()
            return
        try:
            word, unsaid = self.user_word(), ""
        except VbmdError as exc:  # not said yet, or said wrongly (a slope of 0)
            word, unsaid = None, (f"give the {self.missing_word(short=True)} above first" if self.missing_word()
                                  else exc.problem)
        if layer is self._hand_layer and layer.data is self._hand_data and word == self._hand_word and word is not None:
            return
        self._hand_layer, self._hand_data, self._hand_word = layer, layer.data, word
        if word is None:
            self.hand.show_failed(unsaid)
            return
        self.hand.looking()
        if self.hand_runner.busy:  # the look in progress stops; its end starts this one
            self.hand_runner.cancel()
            return
        self._start_look(layer)

    def _start_look(self, layer) -> None:
        make = scan_maker(layer, native=False, word=self._hand_word)  # densities average as the integers do
        self._looking_at = (layer, layer.data, self._hand_word)
        self.hand_runner.start(lambda progress, cancel: look_for_hand(make(), progress, cancel),
                               description=f"Looking for the hand of {layer.name}",
                               on_result=lambda found, word=self._hand_word: self._hand_found(layer, word, *found),
                               on_error=lambda exc: self._hand_failed(layer, exc),
                               on_cancelled=lambda: None, on_finished=self._look_done)

    def _look_done(self) -> None:
        done, self._looking_at = self._looking_at, None
        layer = self._hand_layer
        looked = done is not None and done[0] is layer and done[1] is layer.data and done[2] == self._hand_word
        if layer is not None and not looked and not self.hand_runner.busy:
            self._start_look(layer)  # the scan changed while the last look ran

    def _hand_found(self, layer, word, decision, seen) -> None:
        if layer is not self._hand_layer or layer.data is not self._hand_data or word != self._hand_word:
            return
        self.hand.show_auto(decision, seen)
        if self.hand.needs_choice():
            show_warning(f"Choose the hand (left or right) of {scan_name(layer)} before Run: {self.hand.why()}")
        if self._on_hand is not None:
            self._on_hand(layer)

    def _hand_failed(self, layer, exc) -> None:
        if layer is self._hand_layer:
            self.hand.show_failed(getattr(exc, "problem", None) or str(exc))

    def hand_setting(self, layer):
        """What Run passes as the hand: 'left'/'right' as chosen; with auto, the decision already made
        for this layer (the image is not looked at twice), else None (the run resolves it and refuses
        when nothing decides it). Raises VbmdError when the look found that nothing decides it."""
        chosen = self.hand.requested()
        if chosen is not None:
            return chosen
        if self.hand.needs_choice():
            raise VbmdError(f"Run needs the hand (left or right) of {scan_name(layer)}: {self.hand.why()}")
        auto = self.hand.auto
        if auto is not None and layer is self._hand_layer and layer.data is self._hand_data \
                and self._hand_word == self.user_word():
            return auto
        return None

    def settings(self, threads: int | None) -> RunSettings:
        slice_range = voi_mm = None
        if self.region.value == "slice range":
            first, last = int(self.first.value), int(self.last.value)
            if last < first:
                raise VbmdError(f"the slice range {first} to {last} is empty")
            slice_range = (first, last + 1)
        elif self.region.value == "standard VOI":
            voi_mm = float(self.voi.value)
        return RunSettings(model=self.model_spec(), device=self.device.value, hand=self.hand_setting(self.scan.value),
                           slice_range=slice_range, voi_mm=voi_mm, boundary_band_mm=self.boundary_band_mm(),
                           threads=threads)
