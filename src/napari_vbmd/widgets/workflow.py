"""The "Segment & measure" dock widget: one case from scan to export, in four steps (tabs): Run,
Review, Correct, Export.

A thin front end over ``napari_vbmd.session.CaseSession``: the widget collects inputs, runs the
engine in a worker (``_worker.WorkRunner``) and puts the result on screen; each step is a small
section module (workflow_run, _review, _correct, _export); ``_mask_follower`` follows the mask
layer through napari's public events and tells the session what happened to it. It follows layer
removal: when the case's layers go, the case is closed. No private napari attribute is used.
"""
from __future__ import annotations

import os

import numpy as np
from napari.utils.notifications import show_info, show_warning
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QApplication, QLabel, QProgressBar, QScrollArea, QTabWidget, QVBoxLayout, QWidget

from ..correction import changed_voxels
from ..errors import VbmdError
from ..layers import METADATA_KEY, MODEL_MASK_COLOUR, mask_colours
from ..review import next_slice
from ..session import CaseSession, ModelCache, case_name, plural, run_case
from . import _keys
from ._mask_follower import MaskFollower
from ._worker import WorkRunner, confirm, reports_errors
from .workflow_correct import CorrectSection
from .workflow_export import ExportSection
from .workflow_review import ReviewSection
from .workflow_run import RunSection, adopt_word, scan_maker, scan_name

TABS = ("1 Run", "2 Review", "3 Correct", "4 Export")
SECTION_TABS = {"segment": 0, "run": 0, "results": 1, "review": 1, "correct": 2, "export": 3}


def default_threads() -> int:
    """Torch threads for inference: all cores but one, which stays with the GUI."""
    return max(1, (os.cpu_count() or 2) - 1)


def _scrolling(widget: QWidget) -> QScrollArea:
    area = QScrollArea()
    area.setWidgetResizable(True)
    area.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
    area.setWidget(widget)
    return area


class SegmentMeasureWidget(QWidget):
    """Segment & measure, review, correct and export one case."""

    def __init__(self, napari_viewer, parent=None):
        super().__init__(parent)
        self.viewer = napari_viewer
        self.session = CaseSession()
        self.models = ModelCache()
        self.threads = default_threads()
        self.scan_layer = None
        self._run_layer = None  # the scan layer of the run in progress
        self._run_word = {}  # what the person said about that scan's file (values, voxel size)

        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        self.status_label = QLabel("Choose a scan and press Run.")
        self.status_label.setWordWrap(True)
        self.status_label.setMinimumWidth(10)
        self.progress_bar = QProgressBar()
        self.progress_bar.setRange(0, 100)
        self.progress_bar.setValue(0)
        self.progress_bar.setFormat("")
        self.progress_bar.setVisible(False)  # shown while a run works
        self.summary_label = QLabel("No case yet.")
        self.summary_label.setWordWrap(True)
        self.summary_label.setMinimumWidth(10)
        for w in (self.status_label, self.progress_bar, self.summary_label):
            layout.addWidget(w)
        self.run_tab = RunSection(self._image_layers, self.current_slice, on_hand=self._on_hand_known)
        self.review_tab = ReviewSection(self)
        self.correct_tab = CorrectSection(self)
        self.export_tab = ExportSection(self)
        self.tabs = QTabWidget()
        self.tabs.setUsesScrollButtons(False)
        for title, section in zip(TABS, (self.run_tab, self.review_tab, self.correct_tab, self.export_tab)):
            self.tabs.addTab(_scrolling(section), title)
        layout.addWidget(self.tabs, 1)

        self.runner = WorkRunner(self, bar=self.progress_bar, label=self.status_label,
                                 cancel_button=self.run_tab.cancel_button.native, activity=True)
        self.mask = MaskFollower(self, on_edited=self._show_trail, on_measured=self._on_measured,
                                 on_measure_error=lambda exc: self.review_tab.results_label.setText(f"<i>{exc}</i>"))
        self.run_tab.run_button.changed.connect(lambda *_: self.run())

        events = self.viewer.layers.events
        events.inserted.connect(self._on_layer_inserted)
        events.removed.connect(self._on_layer_removed)
        events.reordered.connect(lambda *_: self.run_tab.refresh_scans())
        self.viewer.dims.events.point.connect(self._on_slice_changed)
        _keys.register(self, "workflow")
        self.run_tab.refresh_scans()
        self._enable_case_tools(False)

    # -- names the tests, scripts and benchmarks use ------------------------------------------------
    run_button = property(lambda self: self.run_tab.run_button.native)
    cancel_button = property(lambda self: self.run_tab.cancel_button.native)
    plot = property(lambda self: self.review_tab.plot)
    result = property(lambda self: self.session.result)
    flags = property(lambda self: self.session.flags)
    segmentation = property(lambda self: self.session.segmentation)
    review = property(lambda self: self.session.review)
    busy = property(lambda self: self.runner.busy)

    labels_layer = property(lambda self: self.mask.layer)
    measuring = property(lambda self: self.mask.busy)

    def show_section(self, name: str) -> None:
        """Show a step: run (or segment), review (or results), correct, export."""
        self.tabs.setCurrentIndex(SECTION_TABS[name])

    def _enable_case_tools(self, enabled: bool) -> None:
        for widget in (*self.review_tab.case_tools, *self.correct_tab.case_tools, *self.export_tab.case_tools):
            widget.setEnabled(enabled)

    # -- layers ------------------------------------------------------------------------------------
    def _image_layers(self):
        from napari.layers import Image

        return [layer for layer in self.viewer.layers if isinstance(layer, Image) and layer.ndim == 3]

    def _on_layer_inserted(self, event=None) -> None:
        self.run_tab.refresh_scans()
        layer = getattr(event, "value", None)
        from napari.layers import Image

        if isinstance(layer, Image) and layer.ndim == 3 and not self.busy and self.run_tab.select_scan(layer):
            if self.session.active:
                self.status_label.setText(f"Opened {layer.name}: Run segments it; the case below stays until then.")

    def _on_layer_removed(self, event=None) -> None:
        self.run_tab.refresh_scans()
        removed = getattr(event, "value", None)
        if removed is None:
            return
        if self.busy and removed == self._run_layer:
            self.runner.cancel()
        if removed == self.scan_layer or removed == self.labels_layer:
            self._close_case(f"The case's layer {removed.name!r} was removed: the case is closed. "
                             "Choose a scan and press Run.")

    def _close_case(self, message: str) -> None:
        self.mask.follow(None)
        self.scan_layer = None
        self.session.reset()
        self.review_tab.clear()
        self.correct_tab.clear()
        self.run_tab.hand.forget_run()
        self.summary_label.setText("No case yet.")
        self._enable_case_tools(False)
        self.status_label.setText(message)

    def viewer_sources(self) -> list[str]:
        """Files behind the viewer's layers: an export never writes over one of them."""
        sources = []
        for layer in self.viewer.layers:
            path = layer.source.path
            meta = (layer.metadata or {}).get(METADATA_KEY) or {}
            sources += [p for p in (path, meta.get("source")) if p]
        return sources

    # -- slices ------------------------------------------------------------------------------------
    def current_slice(self) -> int | None:
        if self.viewer.dims.ndim < 3:
            return None
        scan = self.session.scan
        if scan is None:
            layer = self.run_tab.scan_layer()
            if layer is None:
                return None
            origin, spacing, n = layer.translate[-3], layer.scale[-3], layer.data.shape[-3]
        else:
            origin, spacing, n = scan.origin[0], scan.spacing[0], scan.shape[0]
        z = (self.viewer.dims.point[-3] - origin) / spacing
        return int(np.clip(round(z), 0, n - 1))

    def go_to_slice(self, z: int) -> None:
        scan = self.session.scan
        if scan is None or self.viewer.dims.ndim < 3:
            return
        z = int(np.clip(z, 0, scan.shape[0] - 1))
        self.viewer.dims.set_point(self.viewer.dims.ndim - 3, scan.origin[0] + z * scan.spacing[0])

    def step_slice(self, delta: int) -> None:
        z = self.current_slice()
        if z is not None:
            self.go_to_slice(z + delta)

    def next_flagged(self, backwards: bool = False) -> None:
        if not self.session.active:
            return
        z = next_slice(self.flags, self.current_slice() or 0, backwards=backwards)
        if z is None:
            show_info("no slice is flagged for review")
            return
        self.go_to_slice(z)

    def toggle_outline(self) -> None:
        if self.session.active:
            self.review_tab.outline_check.toggle()

    def set_outline(self, outline: bool) -> None:
        if self.labels_layer is not None:
            self.labels_layer.contour = 2 if outline else 0

    def _on_slice_changed(self, event=None) -> None:
        z = self.current_slice()
        if z is None or not self.session.active:
            return
        if self.result is not None:
            self.plot.set_current(z)
        self._show_slice()

    # -- run ---------------------------------------------------------------------------------------
    @reports_errors
    def run(self) -> None:
        if self.busy:
            raise VbmdError("a run is already going; cancel it first")
        layer = self.run_tab.scan_layer()
        if layer is None:
            raise VbmdError("open a scan first (File › Open, or File › Open Sample › napari-vbmd)")
        word = self.run_tab.user_word()  # refuses while the file and the person both leave something unsaid
        if self.run_tab.hand.needs_choice():
            self.status_label.setText(f"Choose the hand of {scan_name(layer)}, left or right, then press Run.")
        settings = self.run_tab.settings(self.threads)  # refuses an undecided hand
        if self.session.active and layer == self.scan_layer and self.labels_layer is not None:
            self.mask.sync()
            stats = self.session.pending_corrections()
            if stats is not None and not self.ask(
                    "Run again over the corrections?",
                    f"The mask of {self.session.case} has corrections: {stats.voxels_added} voxels added and "
                    f"{stats.voxels_removed} removed in {plural(len(stats.slices_changed), 'slice')}.\n\n"
                    "Running again makes a new model mask. The corrected mask is kept: as a hidden layer, and in "
                    "the case's record (exported reports list it with its operations).\n\nRun again?"):
                show_info("not run: the corrected mask stays as it is")
                return
        make_scan = scan_maker(layer, word=word)
        self._run_word = word
        models = self.models
        self._run_layer = layer
        self.run_button.setEnabled(False)
        self.runner.start(lambda progress, cancel: run_case(make_scan, settings, models, progress, cancel),
                          description=f"Segmenting {layer.name} with {settings.model} on {settings.device}",
                          on_result=self._on_segmented, on_finished=self._on_run_done, on_error=self._on_run_error,
                          on_cancelled=lambda: show_info("segmentation cancelled; nothing was added"))

    def cancel(self) -> None:
        self.runner.cancel()

    def _on_hand_known(self, layer) -> None:
        """The chosen scan's hand was looked for: when nothing decides it, the status line asks too."""
        if not self.busy and self.run_tab.hand.needs_choice():
            self.status_label.setText(f"{scan_name(layer)}: {self.run_tab.hand.ask()}. Choose left or right, then Run.")

    def _on_run_error(self, exc) -> None:
        """A run refused for the hand shows why in the Hand control too (the notification has the line)."""
        from ..segmentation.focus import MaskRefused, OtherBoneError
        from ..segmentation.hand import HandConflictError, HandUndecidedError

        hand = self.run_tab.hand
        if isinstance(exc, HandUndecidedError):
            hand.show_auto(exc.decision)
        elif isinstance(exc, HandConflictError):
            hand.show_refused("Run refused: the image shows the other hand than the one given; check the hand")
        elif isinstance(exc, MaskRefused):
            return  # the model's doing, not the hand's (with its mask, it comes as a run to correct instead)
        elif isinstance(exc, OtherBoneError):
            hand.show_refused("Run refused: the mask lay on another bone than MC2; check the hand")

    def _on_run_done(self) -> None:
        self._run_layer = None
        self.run_button.setEnabled(True)

    def ask(self, title: str, text: str) -> bool:
        return confirm(self, title, text)

    @reports_errors
    def _on_segmented(self, run) -> None:
        layer = self._run_layer
        if layer is None or layer not in self.viewer.layers:
            self.runner.finish("The scan's layer was removed during the run: nothing was added.")
            return
        if layer != self.scan_layer:
            self._close_case("")
        rescaled = "spacing" in self._run_word
        adopt_word(layer, run.scan, self._run_word)
        self.run_tab.refresh_word()
        fallback = layer.name.replace(" (mg HA/cm3)", "").split(" ")[0]
        case = self.session.case if layer == self.scan_layer else case_name(run.scan, fallback)
        kept = self.session.adopt(run, case=case)
        self.scan_layer = layer
        self._show_mask(run, layer, kept)
        if rescaled:
            self.viewer.reset_view()  # the scan was drawn at 1 mm per voxel until now
        self.export_tab.fill_defaults(self.session.default_export_folder(), self.session.case)
        self.run_tab.hand.show_decision(self.session.hand_words().removeprefix("hand: "))
        self._enable_case_tools(True)
        self.show_results()
        self._show_trail()
        if self.flags:
            self.go_to_slice(self.flags[0].slice_index)
        elif run.result.profile.slice_index:
            self.go_to_slice(run.result.first_slice)
        self.runner.finish(self.session.run_words())
        if run.refusal:  # the model's doing, not the hand's: the Hand control stays as it is
            show_warning(f"{scan_name(layer)}: {self.session.refused_words()}")
        self.show_section("review")

    def _show_mask(self, run, scan_layer, kept) -> None:
        scan = run.scan
        mask = self.session.history.original.copy()
        name = f"{scan_layer.name.replace(' (mg HA/cm3)', '')} MC2"
        meta = {METADATA_KEY: {**scan_layer.metadata.get(METADATA_KEY, {}), "kind": "mask", "calibration": None}}
        previous = self.labels_layer
        self.mask.follow(None)
        if previous is not None and previous in self.viewer.layers and kept is not None:
            # the corrected mask stays on screen's record: hidden, read-only, named for what it is
            previous.name = f"{name} corrected (kept, version {len(self.session.history.earlier_versions)})"
            previous.editable = False
            previous.visible = False
            previous = None
        if previous is not None and previous in self.viewer.layers and previous.data.shape == mask.shape:
            # a re-run on the same grid updates the layer (adding one costs the GUI ~0.5 s); switching
            # editing off and on again clears napari's undo history, so no undo reaches the old mask
            previous.data = mask
            previous.scale, previous.translate = tuple(scan.spacing), tuple(scan.origin)
            previous.metadata, previous.name = meta, name
            previous.editable = False
            previous.editable = True
            layer = previous
        else:
            if previous is not None and previous in self.viewer.layers:
                self.viewer.layers.remove(previous)
            layer = self.viewer.add_labels(mask, name=name, scale=tuple(scan.spacing), translate=tuple(scan.origin),
                                           metadata=meta, opacity=0.5, colormap=mask_colours(MODEL_MASK_COLOUR))
        self.mask.follow(layer)
        self.set_outline(self.review_tab.outline_check.isChecked())

    # -- results -----------------------------------------------------------------------------------
    def results_table(self) -> list[tuple[str, str]]:
        return self.session.results_rows()

    def correction_stats(self):
        return self.session.correction_stats()

    def show_results(self) -> None:
        session = self.session
        if not session.active:
            return
        refused = self.result is None  # the model's mask, refused: nothing to measure until it is corrected
        in_status_line = ("Model", "Device", "Time (s)")
        self.review_tab.show_results([row for row in self.results_table() if row[0] not in in_status_line])
        # a refused mask gets no "check the hand side": the refusal says what is wrong, and it is the model's doing
        self.review_tab.show_hand(session.hand_evidence(), "" if refused else session.hand_concern())
        profile = session.refused_profile if refused else self.result.profile  # a refused one: where it runs
        self.plot.show_profile(profile.slice_index, profile.area_mm2, profile.density_mg_ha_cm3,
                               flagged=[f.slice_index for f in self.flags], current=self.current_slice())
        self.correct_tab.correction_label.setText(session.correction_words())
        if refused:
            summary = (f"<b>{session.case}</b>: <b>refused, not measured</b> · {session.flags_words()} · correct the "
                       "mask to measure it")
        else:
            stats = session.correction_stats()
            changed = "no correction" if stats is None or not (stats.voxels_added or stats.voxels_removed) else (
                f"corrected: +{stats.voxels_added} / −{stats.voxels_removed} voxels")
            summary = (f"<b>{session.case}</b>: D100 <b>{self.result.d100_mg_ha_cm3:.1f}</b> mg HA/cm³ · "
                       f"{session.flags_words()} · {changed}"
                       + (" · <b>⚠ check the hand side</b>" if session.hand_concern() else "")
                       + (" · <b>⚠ check the mask</b> (Review)" if session.concern else ""))
        self.summary_label.setText(summary)
        self._show_slice()

    def _show_slice(self) -> None:
        z, review = self.current_slice(), self.review
        if z is None or review is None:
            return
        flag = next((f for f in self.flags if f.slice_index == z), None)
        text = flag.describe() if flag else f"slice {z}: no automatic flag"
        entry = review.slices.get(z)
        if entry:
            text += f" — marked {entry['status']}" + (f": {entry['comment']}" if entry.get("comment") else "")
        self.review_tab.slice_label.setText(text)
        counts = review.counts()
        self.review_tab.review_label.setText(
            f"{plural(len(self.flags), 'slice')} flagged automatically; {counts['reviewed']} marked reviewed, "
            f"{counts['flagged']} flagged by you; case: {review.status}")

    def _show_trail(self) -> None:
        history = self.session.history
        if history is not None:
            self.correct_tab.show_trail(history.operations, history.earlier_versions)

    def copy_results(self) -> None:
        text = "\n".join(f"{k}\t{v}" for k, v in self.results_table())
        if self.session.segmentation is not None and self.session.segmentation.hand_reason:
            text += f"\nHand evidence\t{self.session.segmentation.hand_reason}"
        stats = self.correction_stats()
        if stats is not None:
            text += f"\nVoxels added\t{stats.voxels_added}\nVoxels removed\t{stats.voxels_removed}"
        QApplication.clipboard().setText(text)
        show_info("figures copied to the clipboard")

    # -- review ------------------------------------------------------------------------------------
    def reviewer(self) -> str:
        return self.review_tab.reviewer.value.strip()

    @reports_errors
    def mark_slice(self, status: str) -> None:
        self.require_case()
        self.review.mark_slice(self.current_slice(), status, self.review_tab.comment.value.strip(), self.reviewer())
        self.review_tab.comment.value = ""
        self._show_slice()

    @reports_errors
    def mark_case(self, status: str) -> None:
        self.require_case()
        self.review.mark_case(status, self.review_tab.comment.value.strip(), self.reviewer())
        self.review_tab.comment.value = ""
        self._show_slice()

    def require_case(self, what: str = "there is no case to review") -> None:
        if not self.session.active or self.labels_layer is None:
            raise VbmdError(f"segment a scan first: {what}")

    # -- corrections -------------------------------------------------------------------------------
    @reports_errors
    def correct(self, operation: str) -> None:
        self.require_case("there is no mask to correct")
        self.mask.sync()
        before = np.asarray(self.labels_layer.data)
        after = self.session.apply_tool(operation, before, self.current_slice(),
                                        self.correct_tab.interpolate_spin.value())
        indices, _ = changed_voxels(before != 0, after)
        if not indices[0].size:
            show_info(f"{operation}: nothing to change")
            return
        self.mask.write(operation, indices, after[indices])

    def _on_measured(self) -> None:
        self.status_label.setText("Measured the corrected mask." if self.result is not None else
                                  "The mask is the refused one again: not measured.")
        self.show_results()

    # -- export ------------------------------------------------------------------------------------
    def export(self):
        return self.export_tab.export()

    def save_training_pair(self):
        return self.export_tab.save_training_pair()
