"""The blinded rating widget in a real napari viewer (Xvfb): rate a three-case study by clicks and keys,
check the store, resume; check that nothing the rater sees names a source or a contour file."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from _rating_helpers import PHANTOM_SOURCES, make_phantom_study_inputs
from napari_vbmd.rating import create_study, load_mapping, load_study
from napari_vbmd.rating.store import AnswerStore, latest_answers

pytestmark = pytest.mark.gui


@pytest.fixture(scope="module")
def phantom_inputs(tmp_path_factory):
    root = tmp_path_factory.mktemp("rating_gui")
    manifest, contour_files = make_phantom_study_inputs(root / "m", n_cases=3)
    return manifest, contour_files


def create_blind_study(manifest, tmp_path, name="study", **kwargs):
    """A study whose owner files (the mapping) are kept out of the raters' folder, as they must be."""
    key = tmp_path / f"{name}_owner"
    key.mkdir()
    return create_study(manifest, tmp_path / name, mapping_path=key / "mapping.json", **kwargs), key / "mapping.json"


@pytest.fixture
def study_and_mapping(phantom_inputs, tmp_path):
    manifest, _ = phantom_inputs
    return create_blind_study(manifest, tmp_path)


@pytest.fixture
def study(study_and_mapping):
    return study_and_mapping[0]


def forbidden_words(contour_files) -> list[str]:
    words = {w.casefold() for w in PHANTOM_SOURCES}
    # the words of the file names too ("expert" alone is not: napari's own welcome tips use it)
    words |= {"unet2d", "truth_mask", "_pred", "expert_", "network_"}
    for path in contour_files:
        name = Path(path).name
        words |= {name.casefold(), name.split(".")[0].casefold()}
    return sorted(words)


def visible_texts(viewer) -> list[tuple[str, str]]:
    """Every string the rater can see: layers (name, metadata, properties, features, colormap, source)
    and every widget, action, list entry, tooltip and window title of the application."""
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QAbstractItemView, QAction, QApplication, QComboBox, QTabBar, QWidget

    texts: list[tuple[str, str]] = [("viewer.title", viewer.title)]
    for layer in viewer.layers:
        texts += [
            (f"layer {layer.name} name", layer.name),
            (f"layer {layer.name} metadata", json.dumps(layer.metadata, default=str)),
            (f"layer {layer.name} source", repr(layer.source)),
            (f"layer {layer.name} colormap", repr(layer.colormap)),
        ]
        if hasattr(layer, "properties"):
            texts.append((f"layer {layer.name} properties", repr(layer.properties)))
        if hasattr(layer, "features"):
            texts.append((f"layer {layer.name} features", layer.features.to_string()))
    widgets = []
    for top in QApplication.topLevelWidgets():
        widgets.append(top)
        widgets += top.findChildren(QWidget)
    for w in widgets:
        kind = type(w).__name__
        for attr in ("windowTitle", "toolTip", "statusTip", "whatsThis", "accessibleName", "accessibleDescription",
                     "text", "placeholderText", "toPlainText", "currentText", "title"):
            getter = getattr(w, attr, None)
            if callable(getter):
                try:
                    value = getter()
                except TypeError:
                    continue
                if isinstance(value, str) and value:
                    texts.append((f"{kind}.{attr}", value))
        if isinstance(w, QComboBox):
            texts += [(f"{kind}.item", w.itemText(i)) for i in range(w.count())]
        if isinstance(w, QTabBar):
            texts += [(f"{kind}.tab", w.tabText(i)) for i in range(w.count())]
        if isinstance(w, QAbstractItemView) and w.model() is not None:
            model = w.model()
            for row in range(model.rowCount()):
                for role in (Qt.DisplayRole, Qt.ToolTipRole):
                    value = model.data(model.index(row, 0), role)
                    if isinstance(value, str):
                        texts.append((f"{kind}.row", value))
        for action in w.findChildren(QAction):
            texts += [(f"QAction.{a}", getattr(action, a)()) for a in ("text", "toolTip", "statusTip")]
    return texts


def assert_blind(viewer, contour_files):
    words = forbidden_words(contour_files)
    texts = visible_texts(viewer)
    assert len(texts) > 50  # the walk really reached the widgets
    leaks = [(where, text[:80], w) for where, text in texts for w in words if w in text.casefold()]
    assert not leaks, leaks


def check_case_display(viewer, widget, study):
    """The viewer shows the scan at full resolution with both contours as coloured outlines."""
    from matplotlib.colors import to_rgba

    session = widget.session
    shown = {s.name: s for s in session.shown()}
    names = [layer.name for layer in viewer.layers]
    assert names[0] == "Scan" and sorted(names[1:]) == ["Contour 1", "Contour 2"] and len(names) == 3
    top_name = names[2]
    assert shown[top_name].on_top and not shown[names[1]].on_top  # drawing order follows the presentation
    case = study.case(session.case_id)
    scan_layer = viewer.layers["Scan"]
    assert scan_layer.metadata == {} and scan_layer.source.path is None
    assert viewer.dims.nsteps[0] == scan_layer.data.shape[0] == 24  # every slice, full resolution
    from napari_vbmd.io import read_scan

    assert scan_layer.data.shape == read_scan(study.resolve(case.scan)).shape
    for name in ("Contour 1", "Contour 2"):
        layer = viewer.layers[name]
        assert layer.contour >= 1 and not layer.editable  # outlines, not filled, not paintable
        assert np.allclose(layer.colormap.map(1), to_rgba(shown[name].colour_hex))
        assert layer.colormap.map(0)[3] == 0  # background transparent
        assert np.array_equal(layer.scale, scan_layer.scale) and np.array_equal(layer.translate, scan_layer.translate)
        assert np.asarray(layer.data).any()
    # the current slice shows both contours
    z = int(round((viewer.dims.point[0] - scan_layer.translate[0]) / scan_layer.scale[0]))
    assert all(np.asarray(viewer.layers[n].data[z]).any() for n in ("Contour 1", "Contour 2"))
    assert_framed(viewer)


def assert_framed(viewer):
    """The view is framed on the contours (their box over all slices, plus a quarter of it on every
    side): the same rule for every case, far closer than the whole scan."""
    from napari_vbmd.widgets.rating import FRAME_MARGIN

    scan = viewer.layers["Scan"]
    union = np.logical_or(*[np.asarray(viewer.layers[n].data).any(axis=0) for n in ("Contour 1", "Contour 2")])
    ys, xs = np.flatnonzero(union.any(axis=1)), np.flatnonzero(union.any(axis=0))
    lo = np.array([ys[0], xs[0]]) * scan.scale[1:] + scan.translate[1:] - scan.scale[1:] / 2
    hi = np.array([ys[-1], xs[-1]]) * scan.scale[1:] + scan.translate[1:] + scan.scale[1:] / 2
    camera = viewer.scene.camera
    view = np.array(viewer.canvas.size, float) / camera.zoom  # mm shown (y, x)
    centre = np.array(camera.center[1:])
    assert np.all(lo >= centre - view / 2 - 1e-6) and np.all(hi <= centre + view / 2 + 1e-6)  # all of it in view
    fill = np.max((hi - lo) / view)  # the box fills the view along its tighter axis, less the margins
    assert fill == pytest.approx(1 / (1 + 2 * FRAME_MARGIN), rel=0.02)
    whole_scan_zoom = np.min(np.array(viewer.canvas.size) / (np.array(scan.data.shape[1:]) * scan.scale[1:]))
    assert camera.zoom > 1.5 * whole_scan_zoom  # far closer than the whole scan


def loaded(qtbot, widget) -> None:
    """Cases are read in a worker thread; wait until the case is on screen."""
    qtbot.waitUntil(lambda: not widget.loading, timeout=30000)


def open_rating(make_napari_viewer, qtbot, study, rater):
    from qtpy.QtCore import Qt

    from napari_vbmd.widgets.rating import RatingWidget

    viewer = make_napari_viewer(show=True)
    widget = RatingWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Rating")
    widget.folder.line_edit.value = str(study.folder)
    qtbot.keyClicks(widget.rater.native, rater)
    qtbot.mouseClick(widget.start_button, Qt.LeftButton)
    loaded(qtbot, widget)
    return viewer, widget


def activate(qtbot, viewer) -> None:
    """Keyboard shortcuts only reach the active window."""
    from qtpy.QtWidgets import QApplication

    window = viewer.window._qt_window
    window.activateWindow()
    qtbot.waitUntil(lambda: QApplication.activeWindow() is window, timeout=3000)


def press(qtbot, viewer, key: str) -> None:
    """A key pressed while the canvas has the focus (where the rater's eyes and mouse are)."""
    activate(qtbot, viewer)
    canvas = viewer.window._qt_viewer.canvas.native
    canvas.setFocus()
    qtbot.keyClick(canvas, key)


@pytest.mark.slow
def test_rate_three_cases_by_clicks_and_keys_then_resume(make_napari_viewer, qtbot, study, phantom_inputs):
    from qtpy.QtCore import Qt

    _, contour_files = phantom_inputs
    viewer, widget = open_rating(make_napari_viewer, qtbot, study, "Dr Rater")
    session = widget.session
    order = list(session.order)
    assert widget.progress_label.text() == "Case 1 of 3 (0 rated)"
    assert not widget.next_button.isEnabled() and widget.previous_button.isHidden()
    check_case_display(viewer, widget, study)
    assert_blind(viewer, contour_files)

    # case 1: the key "1" while the canvas has the focus
    press(qtbot, viewer, "1")
    qtbot.waitUntil(lambda: order[0] in session.answers, timeout=3000)
    assert session.answers[order[0]]["choice"] == "contour_1"
    assert widget.choice_buttons["contour_1"].isChecked() and widget.next_button.isEnabled()
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    # while the next case is read (in a worker thread) nothing can be answered
    assert widget.loading and len(viewer.layers) == 0
    assert widget.progress_label.text() == "Case 2 of 3: loading ..."
    assert not any(b.isEnabled() for b in widget.choice_buttons.values())
    widget.choose("equal")
    assert order[1] not in session.answers
    loaded(qtbot, widget)
    assert widget.progress_label.text() == "Case 2 of 3 (1 rated)"
    check_case_display(viewer, widget, study)

    # case 2: a click on "Contour 2", then a change of mind by key "0" (both kept in the store)
    qtbot.mouseClick(widget.choice_buttons["contour_2"], Qt.LeftButton)
    assert session.answers[order[1]]["choice"] == "contour_2"
    press(qtbot, viewer, "0")
    qtbot.waitUntil(lambda: session.answers[order[1]]["choice"] == "equal", timeout=3000)
    assert widget.choice_buttons["equal"].isChecked() and not widget.choice_buttons["contour_2"].isChecked()
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    loaded(qtbot, widget)
    assert widget.progress_label.text() == "Case 3 of 3 (2 rated)"
    assert_blind(viewer, contour_files)

    # the rater stops here: the viewer closes without answering case 3
    viewer.close()

    viewer, widget = open_rating(make_napari_viewer, qtbot, load_study(study.folder), "dr rater")
    session = widget.session
    assert session.order == order and session.case_id == order[2]
    assert widget.progress_label.text() == "Case 3 of 3 (2 rated)"
    assert "2 case(s) already rated" in widget.status_label.text()
    check_case_display(viewer, widget, study)
    activate(qtbot, viewer)
    widget.confidence_combo.setFocus()
    qtbot.keyClick(widget.confidence_combo, "2")  # a digit meant for the confidence box answers nothing
    assert order[2] not in session.answers
    widget.confidence_combo.setCurrentIndex(4)
    qtbot.keyClicks(widget.comment_edit, "outline 2 leaks at 12")  # digits typed here are text, not choices
    assert widget.comment_edit.text() == "outline 2 leaks at 12" and order[2] not in session.answers
    qtbot.mouseClick(widget.choice_buttons["contour_2"], Qt.LeftButton)
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    loaded(qtbot, widget)
    assert widget.progress_label.text() == "All 3 cases are rated. Thank you!"
    assert widget.progress_bar.value() == 3
    assert not any(b.isEnabled() for b in widget.choice_buttons.values())
    assert len(viewer.layers) == 0
    assert_blind(viewer, contour_files)

    # the store: every answer, history included, with what was shown
    records, report = AnswerStore.for_rater(study.folder, "Dr Rater").load()
    assert not report.torn_tail and not report.damaged_lines
    assert [(r["case_id"], r["choice"]) for r in records] == [
        (order[0], "contour_1"), (order[1], "contour_2"), (order[1], "equal"), (order[2], "contour_2")]
    assert records[2]["replaces"] == records[1]["record_id"]
    last = records[3]
    assert last["confidence"] == 4 and last["comment"] == "outline 2 leaks at 12" and last["rater"] == "dr rater"
    assert {r["rater_key"] for r in records} == {"dr rater"} and records[0]["rater"] == "Dr Rater"
    assert len(latest_answers(records)) == 3
    assert all(len(r["shown"]) == 2 and r["time_spent_s"] >= 0 for r in records)


def test_going_back_when_the_study_allows_it(make_napari_viewer, qtbot, phantom_inputs, tmp_path):
    from qtpy.QtCore import Qt

    manifest, _ = phantom_inputs
    study, _ = create_blind_study(manifest, tmp_path, "study_back", allow_back=True)
    viewer, widget = open_rating(make_napari_viewer, qtbot, study, "Back")
    assert not widget.previous_button.isHidden() and not widget.previous_button.isEnabled()
    qtbot.mouseClick(widget.choice_buttons["equal"], Qt.LeftButton)
    qtbot.mouseClick(widget.next_button, Qt.LeftButton)
    loaded(qtbot, widget)
    assert widget.previous_button.isEnabled()
    qtbot.mouseClick(widget.previous_button, Qt.LeftButton)
    loaded(qtbot, widget)
    assert widget.progress_label.text() == "Case 1 of 3 (1 rated)"
    assert widget.choice_buttons["equal"].isChecked()  # the earlier answer is shown again
    qtbot.mouseClick(widget.choice_buttons["contour_1"], Qt.LeftButton)
    records, _ = widget.session.store.load()
    assert [r["choice"] for r in records] == ["equal", "contour_1"]


def test_keys_show_either_contour_alone_and_every_case_opens_framed(make_napari_viewer, qtbot, study):
    from qtpy.QtCore import Qt

    from napari.utils.key_bindings import KeyBinding
    from napari.viewer import Viewer

    viewer, widget = open_rating(make_napari_viewer, qtbot, study, "Keys")
    for key in ("Q", "W"):  # napari keybindings of the viewer: they show in napari's shortcut list
        assert KeyBinding.from_str(key) in Viewer.class_keymap
    visible = lambda: [viewer.layers[n].visible for n in ("Contour 1", "Contour 2")]  # noqa: E731
    assert visible() == [True, True]
    press(qtbot, viewer, "q")
    assert visible() == [True, False] and widget.show_buttons.checkedId() == 1
    press(qtbot, viewer, "w")
    assert visible() == [False, True]
    press(qtbot, viewer, "w")
    assert visible() == [True, True]
    qtbot.mouseClick(widget.show_buttons.button(1), Qt.LeftButton)
    assert visible() == [True, False]
    viewer.scene.camera.zoom = 0.5  # the rater zooms out; Frame brings the contours back
    qtbot.mouseClick(widget.frame_button, Qt.LeftButton)
    assert_framed(viewer)
    for _ in range(study.n_cases):  # the next case opens with both contours, framed by the same rule
        qtbot.mouseClick(widget.choice_buttons["equal"], Qt.LeftButton)
        qtbot.mouseClick(widget.next_button, Qt.LeftButton)
        loaded(qtbot, widget)
        if widget.session.case_id is not None:
            assert visible() == [True, True]
            assert_framed(viewer)


def test_the_rating_widget_refuses_a_folder_holding_the_owners_key(make_napari_viewer, qtbot, phantom_inputs,
                                                                   tmp_path, monkeypatch):
    from qtpy.QtCore import Qt

    import napari_vbmd.widgets._worker as worker
    from napari_vbmd.widgets.rating import RatingWidget

    manifest, _ = phantom_inputs
    unsafe = create_study(manifest, tmp_path / "shared_with_the_key")
    # the key inside the folder, as studies made before the owner folder kept it (study/owner/mapping.json)
    (unsafe.folder / "owner").mkdir()
    (tmp_path / "shared_with_the_key-owner" / "mapping.json").rename(unsafe.folder / "owner" / "mapping.json")
    shown = []
    monkeypatch.setattr(worker, "show_error", shown.append)
    viewer = make_napari_viewer()
    widget = RatingWidget(viewer)
    widget.folder.line_edit.value = str(unsafe.folder)
    widget.rater.value = "Curious"
    qtbot.mouseClick(widget.start_button, Qt.LeftButton)
    assert widget.session is None and len(viewer.layers) == 0
    assert "owner's key" in widget.status_label.text() and "mapping.json" in widget.status_label.text()
    assert shown and "not be blind" in shown[-1]
    assert not (unsafe.folder / "answers" / "curious.jsonl").exists()


@pytest.mark.slow
def test_analysis_is_for_the_owner_only(make_napari_viewer, qtbot, study_and_mapping, monkeypatch):
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QPushButton

    import napari_vbmd.widgets._worker as worker
    from napari_vbmd.widgets.rating_analysis import StudyAnalysisWidget

    study, mapping_path = study_and_mapping
    viewer, widget = open_rating(make_napari_viewer, qtbot, study, "Solo")
    for _ in range(3):
        qtbot.mouseClick(widget.choice_buttons["contour_1"], Qt.LeftButton)
        qtbot.mouseClick(widget.next_button, Qt.LeftButton)
        loaded(qtbot, widget)
    rating_buttons = [b.text() for b in viewer.window._qt_window.findChildren(QPushButton)]
    assert not [t for t in rating_buttons if "analy" in t.casefold()]  # no analysis in the rating view

    shown = []
    monkeypatch.setattr(worker, "show_error", shown.append)
    owner = StudyAnalysisWidget(viewer)
    owner.study.line_edit.value = str(study.folder)
    qtbot.mouseClick(owner.analyze_button, Qt.LeftButton)  # no mapping given: refused, nothing unblinded
    assert owner.summary is None and owner.table.rowCount() == 0 and not owner.runner.busy
    assert "mapping" in owner.status_label.text() and shown
    owner.mapping.line_edit.value = str(mapping_path)
    qtbot.mouseClick(owner.analyze_button, Qt.LeftButton)
    assert owner.runner.busy  # in a worker: the viewer stays usable meanwhile
    qtbot.waitUntil(lambda: owner.summary is not None and not owner.runner.busy, timeout=60000)
    cells = [owner.table.item(i, j).text() for i in range(owner.table.rowCount()) for j in range(2)]
    text = "\n".join(cells)
    assert "3 of 3 by 1 rater(s)" in text and "pooled: decided / ties" in text
    mapping = load_mapping(study, mapping_path)
    assert all(source in text for source in mapping["sources"])
    assert owner.summary["pooled"]["bias"]["name"]["k"] == 3
    assert not owner.plot_label.pixmap().isNull()
    # the outputs go beside the owner's mapping, never into the raters' folder
    assert Path(owner.summary["outputs"]["summary"]).parent == mapping_path.parent / "analysis"
    assert not (study.folder / "owner" / "analysis").exists()
