"""The case a technician works on, from scan to export, with no Qt: the engine under the workflow widget.

``run_case`` segments, measures and flags a scan in stages (for a worker thread, with progress and
cancel); ``CaseSession`` then holds the case: the scan, the segmentation, the figures, the review
flags and verdicts, the masks and their audit trail (``MaskHistory``), re-measuring after an edit,
and export. Any front end (the napari widget, a script, a test) drives it the same way.
"""
from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import numpy as np

from .. import correction, naming
from ..correction import CorrectionStats
from ..errors import CancelledError, VbmdError
from ..measure import VbmdResult, measure_vbmd
from ..review import REASON_HAND, ReviewStore, SliceFlag, joint_removed_side
from ..scan import Scan, calibration_line, spacing_line
from .flags import FlagContext
from .hand_words import decision_words, hand_evidence, source_words
from .history import MaskHistory
from .progress import Report, StagedProgress

if TYPE_CHECKING:
    from ..segmentation.pipeline import SegmentationResult

#: the stages of a run and their shares of the progress bar; the last is the front end's
RUN_STAGES = (("reading the scan", 3), ("loading the model", 7), ("segmenting", 70), ("measuring", 8),
              ("finding slices to review", 7), ("showing the result", 5))
SHOWING = RUN_STAGES[-1][0]

#: correction tools by name: (mask, slice shown, other slice) -> new mask
TOOLS: dict[str, Callable[[np.ndarray, int, int | None], np.ndarray]] = {
    "fill holes (slice)": lambda mask, z, other: correction.fill_holes(mask, z),
    "fill holes (all)": lambda mask, z, other: correction.fill_holes(mask),
    "remove islands": lambda mask, z, other: correction.remove_islands(mask),
    "smooth contour": lambda mask, z, other: correction.smooth_contour(mask, z),
    "copy slice to next": lambda mask, z, other: correction.copy_slice(mask, z),
    "erase lower slices": lambda mask, z, other: correction.erase_slices(mask, z, lower=True),
    "erase higher slices": lambda mask, z, other: correction.erase_slices(mask, z, lower=False),
    "interpolate": lambda mask, z, other: correction.interpolate_slices(mask, other, z),
}


def plural(n: int, word: str, words: str | None = None) -> str:
    """'1 slice', '4 slices'."""
    return f"{n} {word if n == 1 else (words or word + 's')}"


@dataclass(frozen=True)
class RunSettings:
    """What a run is asked to do (the widget's form, a script's arguments)."""

    model: str = "default"  # a name or a checkpoint path
    device: str = "auto"
    #: None or "auto": the file's header, else the image (a run refuses when neither decides); "left" or
    #: "right": the user's; or a decided HandDecision made earlier for this scan (e.g. when it was chosen)
    hand: object = None
    slice_range: tuple[int, int] | None = None  # [first, stop)
    voi_mm: float | None = None
    boundary_band_mm: float | None = None  # None: the model's own
    threads: int | None = None

    def segment_settings(self):
        """The segmentation's settings, assembled in this one place (checked on construction)."""
        from ..segmentation.settings import SegmentSettings

        return SegmentSettings(model=self.model, device=self.device, hand=self.hand, slice_range=self.slice_range,
                               voi_mm=self.voi_mm, threads=self.threads, boundary_band_mm=self.boundary_band_mm,
                               keep_probability=True)


class ModelCache:
    """The models this session has run, each loaded once through the engine's one cache
    (:func:`napari_vbmd.segmentation.models.load`, keyed by the files' SHA-256 and the device)."""

    def __init__(self):
        self._models: dict[tuple[str, str], object] = {}
        self._lock = threading.Lock()

    def get(self, spec: str, device: str):
        from ..segmentation import models

        model = models.load(models.resolve(spec), device)
        with self._lock:
            self._models[(str(spec), str(device))] = model
        return model

    def loaded(self) -> dict:
        """The networks (not the classical method) this session has used, by (spec, device)."""
        from ..segmentation.models import LoadedModel

        with self._lock:
            return {key: model for key, model in self._models.items() if isinstance(model, LoadedModel)}


@dataclass
class CaseRun:
    """What one run produced (made in a worker thread, adopted by the session in the GUI thread)."""

    scan: Scan
    segmentation: "SegmentationResult"
    result: VbmdResult
    flag_context: FlagContext
    flags: list[SliceFlag]
    seconds: float
    settings: RunSettings
    #: why the pipeline refused the model's mask (its one line, without what to do); the mask then comes to be
    #: corrected by hand, and ``result`` (its figures) is kept for the record only, never shown as an answer
    refusal: str = ""


def _check(cancel) -> None:
    if cancel is not None and cancel():
        raise CancelledError("cancelled")


def run_case(make_scan: Callable[[], Scan] | Scan, settings: RunSettings, models: ModelCache | None = None,
             progress: Report | None = None, cancel: Callable[[], bool] | None = None) -> CaseRun:
    """Segment, measure and flag a scan, stage by stage (see RUN_STAGES); the last stage is left to
    the front end, which says "done" once the result is on screen. A mask the pipeline refuses for the model's
    doing (two bones, beyond the joint, a broken outline) comes back as a run with ``refusal`` set, for a person to
    correct; any other refusal is raised."""
    from ..segmentation.focus import MaskRefused
    from ..segmentation.pipeline import run

    stages = StagedProgress(RUN_STAGES, progress)
    started = time.perf_counter()
    stages.stage("reading the scan")
    scan = make_scan() if callable(make_scan) else make_scan
    _check(cancel)
    stages.stage("loading the model", str(settings.model))
    model = (models or ModelCache()).get(settings.model, settings.device)
    _check(cancel)
    stages.stage("segmenting", "finding the bone")

    def inner(step: int, total: int, message: str) -> None:
        if message != "done":  # the pipeline's own end is not the run's
            stages.within(step, total, message)

    try:
        seg, refusal = run(scan, settings.segment_settings().replace(model=model), progress=inner, cancel=cancel), ""
    except MaskRefused as exc:
        if exc.refused is None:
            raise
        seg, refusal = exc.refused, exc.reason
    _check(cancel)
    stages.stage("measuring")
    result = measure_vbmd(scan, seg.mask)
    _check(cancel)
    stages.stage("finding slices to review")
    context = FlagContext.from_segmentation(scan, seg)
    flags = context.flags(np.asarray(seg.mask.data))
    _check(cancel)
    stages.stage(SHOWING)
    return CaseRun(scan, seg, result, context, flags, time.perf_counter() - started, settings, refusal)


class CaseSession:
    """One case: scan, segmentation, figures, flags, verdicts, masks and their trail, export."""

    def __init__(self):
        self.reset()

    def reset(self) -> None:
        self.scan: Scan | None = None
        self.segmentation = None
        self.settings: RunSettings | None = None
        self.result: VbmdResult | None = None
        self.d100_model: float | None = None
        self.flags: list[SliceFlag] = []
        self.flag_context: FlagContext | None = None
        self.review: ReviewStore | None = None
        self.history: MaskHistory | None = None
        self.seconds: float | None = None
        self.case = ""
        self.refusal = ""  # why the pipeline refused the model's mask ('' when it did not)
        self.concern = ""  # what the checks find wrong with the mask as last measured ('' when nothing)
        self.refused_profile = None  # the refused mask's slice profile: where it runs, to correct it by
        self._measured: np.ndarray | None = None

    @property
    def active(self) -> bool:
        return self.scan is not None and self.history is not None

    def _require(self) -> None:
        if not self.active:
            raise VbmdError("segment a scan first: there is no case yet")

    # -- a run -----------------------------------------------------------------------------------
    def pending_corrections(self, mask=None) -> CorrectionStats | None:
        """How the mask (now, or ``mask``) differs from the model's, when it does; None otherwise."""
        if not self.active:
            return None
        if mask is not None:
            self.observe(mask)
        stats = self.history.stats()
        return stats if stats.voxels_added or stats.voxels_removed else None

    def adopt(self, run: CaseRun, case: str | None = None) -> dict | None:
        """Make a run the case. When the same scan was corrected before, the corrected mask and its
        trail are kept on record as an earlier version (returned)."""
        mask = (np.asarray(run.segmentation.mask.data) != 0).astype(np.uint8)
        same_case = self.active and self.scan.source == run.scan.source and self.history.original.shape == mask.shape
        kept = None
        if same_case:
            kept = self.history.supersede(mask, run.segmentation.model)
        else:
            self.history = MaskHistory(mask, run.segmentation.model)
        self.scan, self.segmentation, self.settings = run.scan, run.segmentation, run.settings
        self.result, self.d100_model, self.flags = run.result, run.result.d100_mg_ha_cm3, run.flags
        self.refusal = self.concern = run.refusal
        self.refused_profile = run.result.profile if run.refusal else None
        if run.refusal:  # no figures until a person has corrected the mask
            self.result = None
        self.flag_context, self.seconds = run.flag_context, run.seconds
        self.case = case or self.case or case_name(run.scan)
        self.review = ReviewStore(case=self.case, scan=run.scan.source)
        self._measured = mask != 0
        return kept

    # -- edits -----------------------------------------------------------------------------------
    def apply_tool(self, operation: str, mask, z: int, other: int | None = None) -> np.ndarray:
        """The mask after a correction tool (the input is not modified; nothing is recorded yet)."""
        self._require()
        if operation not in TOOLS:
            raise VbmdError(f"unknown correction {operation!r}")
        return TOOLS[operation](np.asarray(mask), z, other)

    def record(self, operation: str, mask, by: str = "") -> dict | None:
        self._require()
        return self.history.record(operation, mask, by)

    def observe(self, mask, by: str = "") -> dict | None:
        """Note a change the front end did not make (napari's undo/redo); None if there is none."""
        self._require()
        return self.history.observe(mask, by)

    # -- measuring -------------------------------------------------------------------------------
    def needs_measuring(self, mask) -> bool:
        return self.active and (self._measured is None or not np.array_equal(np.asarray(mask) != 0, self._measured))

    def measure(self, mask) -> tuple[np.ndarray, VbmdResult | None, list[SliceFlag], str]:
        """Figures, flags and the checks' concern of ``mask`` (safe in a worker thread: it reads the case, changes
        nothing). The figures are None while the mask is still the one the pipeline refused; the concern is what
        the pipeline's checks (:func:`~napari_vbmd.segmentation.pipeline.mask_concern`) find in a refused mask as
        corrected, '' when nothing, and '' for a case that was not refused (0.4-1.3 s a mask, not spent there)."""
        from ..segmentation.pipeline import mask_concern

        self._require()
        inside = np.asarray(mask) != 0
        flags = self.flag_context.flags(inside) if self.flag_context is not None else []
        if self._still_refused(inside):
            return inside, None, flags, self.refusal
        result = measure_vbmd(self.scan, inside.astype(np.uint8))
        if not self.refusal:
            return inside, result, flags, ""
        box = self.segmentation.box
        found = mask_concern(inside, self.scan, (box.z0, box.z1))
        return inside, result, flags, found[1] if found else ""

    def accept(self, inside: np.ndarray, result: VbmdResult | None, flags: list[SliceFlag], concern: str = "") -> None:
        self._measured, self.result, self.flags, self.concern = inside, result, flags, concern

    def measured(self, mask) -> VbmdResult:
        """The figures of ``mask``, measured now if they are not yet (in the calling thread); VbmdError while it
        is the mask the pipeline refused."""
        if self.needs_measuring(mask):
            self.accept(*self.measure(mask))
        if self.result is None:
            raise VbmdError(self.refused_words())
        return self.result

    def _still_refused(self, mask) -> bool:
        """``mask`` is the model's mask the pipeline refused, unchanged."""
        return bool(self.refusal) and np.array_equal(np.asarray(mask) != 0, self.history.original != 0)

    def refused_words(self) -> str:
        """What a refused, uncorrected mask is, and what to do: one line."""
        return (f"the model's mask was refused: {self.refusal}. It is not measured until you correct it (the Correct "
                "tab, or napari's label tools); nothing written")

    def correction_stats(self) -> CorrectionStats | None:
        if not self.active or self.result is None:
            return None
        return self.history.stats(None, self.d100_model, self.result.d100_mg_ha_cm3)

    # -- words -----------------------------------------------------------------------------------
    def results_rows(self) -> list[tuple[str, str]]:
        r, seg = self.result, self.segmentation
        if r is None:
            return [("Not measured", f"the model's mask was refused: {self.refusal}"),
                    ("To measure", "correct the mask (the Correct tab, or napari's label tools): it is measured "
                                   "once changed")] if self.refusal and seg is not None else []
        return [
            ("D100 (mg HA/cm³)", f"{r.d100_mg_ha_cm3:.1f}"),
            ("SD (mg HA/cm³)", f"{r.sd_mg_ha_cm3:.1f}"),
            ("Volume (mm³)", f"{r.volume_mm3:.1f}"),
            ("Slices", f"{r.n_slices} ({r.first_slice}–{r.last_slice})"),
            ("Mean slice area (mm²)", f"{r.mean_slice_area_mm2:.2f}"),
            ("Calibration", calibration_line(self.scan)),
            ("Voxel size", spacing_line(self.scan)),
            ("Hand", decision_words(seg.hand_decision) if seg else ""),
            ("Model", seg.model if seg else ""),
            ("Device", seg.where if seg else ""),
            ("Time (s)", f"{self.seconds:.1f}" if self.seconds is not None else ""),
        ] + ([("Joint", self.joint_words())] if seg is not None and seg.joint_cut else []) \
            + ([("MC2", seg.bone_unchecked)] if seg is not None and seg.bone_unchecked else []) \
            + ([("Refused", f"the model's mask: {headline(self.refusal)}; measured as you corrected it")]
               if self.refusal else []) \
            + ([("Check", f"⚠ the mask as it is: {self.concern}")] if self.concern else [])

    def joint_words(self) -> str:
        """Where the mask was parted from another bone (the proximal phalanx at a waist, a piece across the joint
        space or beside MC2); '' when it was not."""
        cut = self.segmentation.joint_cut if self.segmentation else None
        if not cut:
            return ""
        if cut.get("beside"):
            first, last = cut["other_slices"]
            return (f"a piece of another bone beside MC2 removed ({cut['removed_voxels']} voxels about slices "
                    f"{first}-{last}); check that it was not MC2's")
        side = joint_removed_side(cut["kept"] == "higher" if cut.get("kept") else None)
        if cut.get("by") == "joint space":  # found by the softer tissue between two pieces, not by a waist
            return (f"parted from another bone across the joint (the proximal phalanx, or a neighbour's head) at "
                    f"slice {cut['slice']} ({cut['removed_voxels']} voxels {side} removed); check that they were "
                    "not MC2's")
        return (f"parted from the proximal phalanx at slice {cut['slice']} "
                f"({cut['removed_voxels']} voxels {side} removed); check that they were the phalanx, not MC2")

    def hand_words(self) -> str:
        """'hand: left (found in the image, confidence 0.997)', 'hand: right (you chose)'."""
        seg = self.segmentation
        return f"hand: {decision_words(seg.hand_decision)}" if seg else ""

    def hand_evidence(self) -> str:
        """The image's evidence for the hand (or the header the user overruled); '' when there is none."""
        return hand_evidence(self.segmentation.hand_decision) if self.segmentation else ""

    def hand_concern(self) -> str:
        """When the review flags say "check the hand side" (most slices flagged), that, in one line."""
        flagged = [f for f in self.flags if REASON_HAND in f.reasons]
        if not flagged or self.segmentation is None:
            return ""
        share = flagged[0].details.get("flagged_fraction")
        how_many = f"{share:.0%} of the mask's slices are" if share is not None else "most of the mask's slices are"
        return (f"Check the hand side: {how_many} flagged, as for a mask of another bone. "
                f"The mask was made for a {self.segmentation.hand} hand "
                f"({source_words(self.segmentation.hand_source, self.segmentation.hand_confidence)}); if that is "
                "wrong, choose the other hand and run again.")

    def flags_words(self) -> str:
        return plural(len(self.flags), "slice") + " flagged for review"

    def run_words(self) -> str:
        seg = self.segmentation
        refused = (f" Refused: {self.refusal}. The mask is shown to correct by hand; it is measured once corrected."
                   if self.refusal else "")
        return (f"Done in {self.seconds:.1f} s: {seg.model} on {seg.where}; {self.hand_words()}; "
                f"{self.flags_words()}.{refused}")

    def correction_words(self) -> str:
        stats = self.correction_stats()
        if stats is None or not (stats.voxels_added or stats.voxels_removed):
            return "Correction: none yet"
        change = f"{stats.d100_change:+.1f}" if round(stats.d100_change, 1) else "±0.0"
        return (f"Correction: +{stats.voxels_added} / −{stats.voxels_removed} voxels "
                f"({plural(len(stats.slices_changed), 'slice')}); D100 {stats.d100_before:.1f} → "
                f"{stats.d100_after:.1f} mg HA/cm³ ({change})")

    # -- export ----------------------------------------------------------------------------------
    def default_export_folder(self) -> Path | None:
        from ..export import default_export_folder

        return default_export_folder(self.scan.source) if self.scan is not None else None

    def export(self, folder: str | Path, case: str, mask, formats=("aim",), reviewer: str = "", protect=(),
               overwrite: bool = False, make_folder: bool = False) -> dict[str, Path]:
        """Measure the final mask if needed and write the export (see ``napari_vbmd.export``)."""
        from ..export import export_case

        self._require()
        self.observe(mask, reviewer)
        result = self.measured(mask)  # before the folder is made: a refused mask leaves nothing behind
        folder = self._folder(folder, make_folder)
        final = (np.asarray(mask) != 0).astype(np.uint8)
        return export_case(
            folder, case, self.scan, final, result, original_mask=self.history.original,
            model=self.segmentation.model, device=self.segmentation.device, review=self.review, reviewer=reviewer,
            stats=self.correction_stats(), provenance=self.provenance(), seconds=self.seconds,
            formats=formats, overwrite=overwrite, protect=protect, hand=self.segmentation.hand,
            hand_source=self.segmentation.hand_source, hand_confidence=self.segmentation.hand_confidence,
            hand_reason=self.segmentation.hand_reason)

    def save_training_pair(self, folder: str | Path, case: str, mask, reviewer: str = "", protect=(),
                           overwrite: bool = False) -> dict[str, Path]:
        from ..export import save_training_pair

        self._require()
        self.observe(mask, reviewer)
        final = (np.asarray(mask) != 0).astype(np.uint8)
        if self._still_refused(final):
            raise VbmdError(self.refused_words())
        return save_training_pair(folder, case, self.scan, final, provenance=self.provenance(),
                                  overwrite=overwrite, protect=protect)

    def provenance(self) -> dict:
        """The mask's trail for a report, with why the pipeline refused the model's mask and what the checks find
        wrong with the mask as exported (None when nothing)."""
        return {**self.history.provenance(), "model_mask_refused": self.refusal or None,
                "mask_concern": self.concern or None}

    @staticmethod
    def _folder(folder: str | Path, make_folder: bool) -> Path:
        folder = Path(folder)
        if make_folder and not folder.exists():
            if not folder.parent.is_dir():
                raise VbmdError("the folder above the export folder does not exist", folder.parent)
            folder.mkdir()
        return folder


def headline(line: str) -> str:
    """A check's one line up to its first colon or semicolon: what it found, without the figures' account."""
    return re.split(r": |; ", line, maxsplit=1)[0]


def case_name(scan: Scan, fallback: str = "case") -> str:
    """A case's default name: :func:`napari_vbmd.naming.case_name` of the scan's file."""
    return naming.case_name(scan.source, fallback)
