"""Analysis of rating studies against figures computed by hand."""
from __future__ import annotations

import csv
import json
import math

import pytest

from _rating_helpers import make_manifest
from napari_vbmd.cli import main
from napari_vbmd.errors import VbmdError
from napari_vbmd.rating import RatingSession, analyze, create_study, fleiss_kappa, load_mapping, load_study
from napari_vbmd.rating.analysis import cohen_kappa
from napari_vbmd.rating.store import load_all_answers
from napari_vbmd.rating.study import ContourRef, Study, StudyCase

EXPERT, NETWORK = "expert", "network v2"


def fake_study(tmp_path, n: int) -> tuple[Study, dict]:
    cases = [
        StudyCase(f"c{i:02d}", "scan.nii.gz", "0" * 64,
                  [ContourRef(f"x{i}", f"x{i}.nii.gz", "1" * 64), ContourRef(f"y{i}", f"y{i}.nii.gz", "2" * 64)])
        for i in range(n)
    ]
    study = Study(folder=tmp_path, study_id="s-analysis", created="", allow_back=False, cases=cases)
    mapping = {"sources": [EXPERT, NETWORK], "title": None,
               "cases": {f"c{i:02d}": {f"x{i}": EXPERT, f"y{i}": NETWORK} for i in range(n)}}
    return study, mapping


def rate(study: Study, mapping: dict, rater: str, preferred: dict[str, str]) -> None:
    """Answer every case so that the given source (or 'equal') is preferred, whatever was shown."""
    session = RatingSession(study, rater)
    while session.case_id is not None:
        want = preferred[session.case_id]
        if want == "equal":
            choice = "equal"
        else:
            shown = session.shown()
            names = [mapping["cases"][session.case_id][s.contour_id] for s in shown]
            choice = ("contour_1", "contour_2")[names.index(want)]
        session.answer(choice)
        session.next()


def hand_wilson(k: int, n: int) -> tuple[float, float]:
    z = 1.959963984540054
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return centre - half, centre + half


def test_27_of_41_decided_cases_is_65_9_percent(tmp_path):
    study, mapping = fake_study(tmp_path, 50)
    ids = [c.case_id for c in study.cases]
    preferred = {cid: EXPERT for cid in ids[:27]} | {cid: NETWORK for cid in ids[27:41]} | {cid: "equal" for cid in ids[41:]}
    rate(study, mapping, "Alice", preferred)
    records, _ = load_all_answers(tmp_path)
    summary, rows = analyze(records, study, mapping)

    assert summary["n_cases"] == 50 and summary["n_rated"] == 50 and summary["n_raters"] == 1
    pooled = summary["pooled"]
    assert pooled["n_decided"] == 41 and pooled["ties"] == 9
    expert = pooled["sources"][EXPERT]
    assert (expert["k"], expert["n"]) == (27, 41)
    assert round(100 * expert["proportion"], 1) == 65.9
    lo, hi = hand_wilson(27, 41)
    assert expert["ci95_low"] == pytest.approx(lo, abs=1e-12) and expert["ci95_high"] == pytest.approx(hi, abs=1e-12)
    assert (round(expert["ci95_low"], 3), round(expert["ci95_high"], 3)) == (0.505, 0.784)
    # two-sided exact binomial test against 1/2, by hand: twice the upper tail P(X >= 27), X ~ Bin(41, 1/2)
    p_hand = 2 * sum(math.comb(41, k) for k in range(27, 42)) / 2**41
    assert expert["p_value"] == pytest.approx(p_hand, rel=1e-12)
    assert round(expert["p_value"], 4) == 0.0596
    network = pooled["sources"][NETWORK]
    assert (network["k"], network["n"]) == (14, 41) and network["p_value"] == pytest.approx(p_hand, rel=1e-12)
    assert summary["per_rater"]["Alice"]["sources"][EXPERT]["k"] == 27
    assert summary["agreement"] is None  # one rater

    # the bias checks count what the rater chose on screen, independent of the source
    decided = [r for r in rows if r["choice"] != "equal"]
    assert pooled["bias"]["name"]["k"] == sum(r["choice"] == "contour_1" for r in decided)
    assert pooled["bias"]["colour"]["k"] == sum(r["chosen_colour"] == "orange" for r in decided)
    on_top = sum(
        next(s for s in r["shown"] if s["name"] == r["chosen_name"])["on_top"] for r in decided
    )
    assert pooled["bias"]["on_top"]["k"] == on_top and pooled["bias"]["on_top"]["n"] == 41


def test_a_rater_who_always_picks_contour_1_is_flagged(tmp_path):
    study, mapping = fake_study(tmp_path, 30)
    session = RatingSession(study, "Lazy")
    while session.case_id is not None:
        session.answer("contour_1")
        session.next()
    summary, _ = analyze(load_all_answers(tmp_path)[0], study, mapping)
    name = summary["pooled"]["bias"]["name"]
    assert (name["k"], name["n"], name["proportion"]) == (30, 30, 1.0)
    assert name["p_value"] == pytest.approx(2 / 2**30)
    # ... while the source preference stays a coin toss, since names are assigned at random
    assert 0.05 < summary["pooled"]["sources"][EXPERT]["p_value"]


def test_cohen_kappa_for_two_raters_by_hand(tmp_path):
    study, mapping = fake_study(tmp_path, 10)
    ids = [c.case_id for c in study.cases]
    e, n, t = EXPERT, NETWORK, "equal"
    a = [e, e, e, e, e, n, n, n, t, t]
    b = [e, e, e, e, n, n, n, e, t, n]
    rate(study, mapping, "A", dict(zip(ids, a)))
    rate(study, mapping, "B", dict(zip(ids, b)))
    summary, _ = analyze(load_all_answers(tmp_path)[0], study, mapping)
    agreement = summary["agreement"]
    # observed 7/10; chance (5*5 + 3*4 + 2*1) / 100 = 0.39; kappa = (0.7 - 0.39) / (1 - 0.39)
    assert agreement["method"] == "cohen" and agreement["n_common_cases"] == 10
    assert agreement["observed_agreement"] == pytest.approx(0.7)
    assert agreement["kappa"] == pytest.approx((0.7 - 0.39) / 0.61)
    assert summary["per_rater"]["A"]["ties"] == 2 and summary["per_rater"]["B"]["ties"] == 1
    assert summary["pooled"]["ties"] == 3 and summary["pooled"]["n_decided"] == 17


def test_fleiss_kappa_for_three_raters_by_hand(tmp_path):
    study, mapping = fake_study(tmp_path, 4)
    ids = [c.case_id for c in study.cases]
    e, n, t = EXPERT, NETWORK, "equal"
    answers = {"R1": [e, e, n, e], "R2": [e, e, n, t], "R3": [e, n, n, n]}
    for rater, prefs in answers.items():
        rate(study, mapping, rater, dict(zip(ids, prefs)))
    summary, _ = analyze(load_all_answers(tmp_path)[0], study, mapping)
    agreement = summary["agreement"]
    # P_i = 1, 1/3, 1, 0 -> mean 7/12; category shares 1/12, 6/12, 5/12 -> chance 62/144; kappa = 11/41
    assert agreement["method"] == "fleiss" and agreement["n_common_cases"] == 4
    assert agreement["kappa"] == pytest.approx(11 / 41)


def test_fleiss_kappa_textbook_example():
    # Fleiss (1971) as tabulated on Wikipedia: 10 subjects, 14 raters, 5 categories, kappa 0.210
    table = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
             [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]
    assert round(fleiss_kappa(table), 3) == 0.210
    with pytest.raises(ValueError):
        fleiss_kappa([[1, 1], [3, 0]])
    assert math.isnan(cohen_kappa(["a", "a"], ["a", "a"]))


def test_cli_analyze_json_csv_and_plot(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "m", n_cases=3)
    study = create_study(manifest, tmp_path / "study")
    mapping = load_mapping(study)
    for rater, choices in (("Alice", ["contour_1", "equal", "contour_2"]), ("Bob", ["contour_2"] * 3)):
        session = RatingSession(load_study(study.folder), rater)
        for choice in choices:
            session.answer(choice)
            session.next()
    alice = RatingSession(load_study(study.folder), "Alice")
    alice.index = 0
    alice.answer("contour_1", comment="changed my mind")  # study forbids going back; the owner's tool may not
    records, _ = load_all_answers(study.folder)
    assert len(records) == 7

    assert main(["study", "analyze", str(study.folder), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    for key in ("n_cases", "n_rated", "pooled", "per_rater", "agreement", "sources", "outputs"):
        assert key in summary
    assert summary["n_cases"] == 3 and summary["n_rated"] == 3 and summary["n_raters"] == 2
    assert summary["n_answers"] == 6 and summary["n_records"] == 7
    assert summary["per_rater"]["Alice"]["n_changed"] == 1
    assert summary["agreement"]["method"] == "cohen" and summary["agreement"]["n_common_cases"] == 3
    pooled = summary["pooled"]
    assert pooled["ties"] + pooled["n_decided"] == 6
    assert {"k", "n", "proportion", "ci95_low", "ci95_high", "p_value"} <= set(pooled["sources"][EXPERT])

    with open(summary["outputs"]["answers_csv"], newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 7 and sum(r["is_latest"] == "True" for r in rows) == 6
    for row in rows:
        case_map = mapping["cases"][row["case_id"]]
        record = next(r for r in records if r["record_id"] == row["record_id"])
        shown = {s["name"]: s for s in record["shown"]}
        assert row["contour_1_source"] == case_map[shown["Contour 1"]["contour_id"]]
        assert row["contour_2_source"] == case_map[shown["Contour 2"]["contour_id"]]
        expected = "equal" if row["choice"] == "equal" else case_map[shown[row["chosen_name"]]["contour_id"]]
        assert row["preferred_source"] == expected
        assert row["contour_1_sha256"] == shown["Contour 1"]["sha256"]

    import matplotlib.image

    plot = matplotlib.image.imread(summary["outputs"]["plot"])
    assert plot.ndim == 3 and plot.shape[0] > 200 and plot.std() > 0.01  # a real picture, not blank
    assert json.loads(open(summary["outputs"]["summary"]).read())["n_records"] == 7

    # the readable table names every rater and the pooled figures
    assert main(["study", "analyze", str(study.folder), "--out", str(tmp_path / "out")]) == 0
    text = capsys.readouterr().out
    assert "rater Alice" in text and "pooled: expert preferred" in text and "cohen kappa" in text
    assert (tmp_path / "out" / "answers.csv").is_file()


def test_analysis_needs_the_matching_mapping(tmp_path, capsys):
    manifest = make_manifest(tmp_path / "m", n_cases=1)
    outside = tmp_path / "secret" / "mapping.json"
    outside.parent.mkdir()
    create_study(manifest, tmp_path / "one", mapping_path=outside)
    create_study(manifest, tmp_path / "two")
    assert main(["study", "analyze", str(tmp_path / "one")]) == 2
    assert "no owner mapping" in capsys.readouterr().err
    assert main(["study", "analyze", str(tmp_path / "one"), "--mapping", str(outside), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_rated"] == 0
    with pytest.raises(VbmdError, match="mapping belongs to study"):
        load_mapping(load_study(tmp_path / "two"), outside)


@pytest.mark.parametrize("k, n", [(0, 3), (3, 3), (0, 41), (41, 41), (1, 1)])
def test_wilson_interval_contains_the_proportion_at_the_edges(k, n):
    from napari_vbmd.rating import wilson_interval

    lo, hi = wilson_interval(k, n)
    assert lo <= k / n <= hi
    assert (lo == 0.0) == (k == 0) and (hi == 1.0) == (k == n)
    assert (lo, hi) == pytest.approx(hand_wilson(k, n), abs=1e-12)


def test_plot_when_one_source_wins_every_decided_case(tmp_path):
    """A unanimous rater: p = 1 with its interval's upper end at 1 (once an error bar went negative)."""
    from napari_vbmd.rating.analysis import plot_summary

    study, mapping = fake_study(tmp_path, 3)
    rate(study, mapping, "Sure", {c.case_id: NETWORK for c in study.cases})
    summary, _ = analyze(load_all_answers(tmp_path)[0], study, mapping)
    stats = summary["pooled"]["sources"][NETWORK]
    assert (stats["k"], stats["n"], stats["ci95_high"]) == (3, 3, 1.0)
    assert summary["pooled"]["sources"][EXPERT]["ci95_low"] == 0.0
    import matplotlib.image

    image = matplotlib.image.imread(plot_summary(summary, tmp_path / "plot.png"))
    assert image.shape[0] > 200 and image.std() > 0.01
