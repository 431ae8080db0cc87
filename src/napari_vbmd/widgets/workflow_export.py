"""Step 4 of the workflow, Export: where the case's files go (a magicgui form), the export and the
training pair, through the case session. Files the case reads (every layer's source) are passed
on as protected; an earlier export of this tool is replaced only when the user confirms."""
from __future__ import annotations

from magicgui import widgets as mw
from napari.utils.notifications import show_info
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from ..errors import VbmdError
from ..export import ExportExistsError
from ._worker import reports_errors


class ExportSection(QWidget):
    def __init__(self, desk, parent=None):
        super().__init__(parent)
        self._desk = desk
        self.folder = mw.FileEdit(label="Folder", mode="d",
                                  tooltip="default: a folder of its own beside the scan (made on export)")
        self.case = mw.LineEdit(label="Case", tooltip="file names start with it: CASE_mask.aim, CASE_report.json, …")
        self.aim = mw.CheckBox(text="AIM", value=True)
        self.nifti = mw.CheckBox(text="NIfTI")
        self.tiff = mw.CheckBox(text="TIFF")
        self.formats = mw.Container(label="Mask as", layout="horizontal", labels=False,
                                    widgets=[self.aim, self.nifti, self.tiff])
        self.formats.margins = (0, 0, 0, 0)
        self.export_button = mw.PushButton(text="Export mask + report")
        self.training_folder = mw.FileEdit(label="Training folder", mode="d",
                                           tooltip="CASE.aim + CASE_mask.aim, the layout vbmd train reads")
        self.train_button = mw.PushButton(text="Save as training pair")
        self.form = mw.Container(widgets=[self.folder, self.case, self.formats, self.export_button,
                                          self.training_folder, self.train_button])
        layout = QVBoxLayout(self)
        layout.addWidget(self.form.native)
        note = QLabel("Files go into a folder of their own by default. A file napari-vbmd did not write, or one "
                      "the case reads (the scan, a mask open in the viewer), is never replaced; an earlier "
                      "export of the case is replaced only when you confirm.")
        note.setWordWrap(True)
        note.setMinimumWidth(10)
        note.setStyleSheet("color: gray")
        layout.addWidget(note)
        self.status = QLabel("")
        self.status.setWordWrap(True)
        self.status.setMinimumWidth(10)
        layout.addWidget(self.status)
        layout.addStretch(1)
        self.export_button.changed.connect(lambda *_: self.export())
        self.train_button.changed.connect(lambda *_: self.save_training_pair())

    @property
    def case_tools(self):
        return (self.export_button.native, self.train_button.native)

    @staticmethod
    def text_of(file_edit: mw.FileEdit) -> str:
        """What the user typed ('' when empty: magicgui reads an empty path as '.')."""
        return file_edit.line_edit.value.strip()

    def folder_text(self) -> str:
        return self.text_of(self.folder)

    def training_text(self) -> str:
        return self.text_of(self.training_folder)

    def chosen_formats(self) -> list[str]:
        return [name for name, box in (("aim", self.aim), ("nifti", self.nifti), ("tiff", self.tiff)) if box.value]

    def fill_defaults(self, folder, case: str) -> None:
        """A new case: its own name and export folder (what the user typed for this case stays)."""
        self.case.value = case
        self.folder.line_edit.value = str(folder) if folder else ""
        self.status.setText("")

    # -- writing -----------------------------------------------------------------------------------
    def _ask_to_replace(self, exc: ExportExistsError, what: str) -> bool:
        names = "\n".join(p.name for p in exc.paths)
        return self._desk.ask(f"Replace the earlier {what}?",
                                   f"napari-vbmd exported this case here before:\n{names}\n\nReplace those files?")

    def _inputs(self, folder: str, what: str):
        desk = self._desk
        desk.require_case(what)
        if not folder:
            raise VbmdError("choose a folder")
        return desk.session, desk.labels_layer.data, self.case.value.strip(), desk.reviewer(), desk.viewer_sources()

    @reports_errors
    def export(self):
        folder = self.folder_text()
        session, mask, case, reviewer, protect = self._inputs(folder, "there is nothing to export")
        formats = self.chosen_formats()
        if not formats:
            raise VbmdError("choose at least one mask format (AIM, NIfTI or TIFF)")
        self._desk.mask.sync()
        args = (folder, case, mask, formats, reviewer, protect)
        try:
            written = session.export(*args, make_folder=True)
        except ExportExistsError as exc:
            if not self._ask_to_replace(exc, "export"):
                show_info("export not written: the earlier export is kept")
                return None
            written = session.export(*args, overwrite=True, make_folder=True)
        self._desk.show_results()
        self.status.setText(f"Exported {len(written)} files to {folder}: " + ", ".join(p.name for p in written.values()))
        self._desk.status_label.setText(f"Exported {len(written)} files to {folder}.")
        show_info(f"exported {len(written)} files to {folder}")
        return written

    @reports_errors
    def save_training_pair(self):
        folder = self.training_text()
        session, mask, case, reviewer, protect = self._inputs(folder, "there is no mask to save")
        self._desk.mask.sync()
        args = (folder, case, mask, reviewer, protect)
        try:
            written = session.save_training_pair(*args)
        except ExportExistsError as exc:
            if not self._ask_to_replace(exc, "training pair"):
                show_info("training pair not written: the earlier one is kept")
                return None
            written = session.save_training_pair(*args, overwrite=True)
        self.status.setText(f"Saved the training pair {case} to {folder}")
        self._desk.status_label.setText(f"Saved the training pair {case} to {folder}.")
        show_info(f"saved training pair {case} to {folder}")
        return written
