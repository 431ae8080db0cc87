"""`vbmd evaluate` and `vbmd agreement` end to end on small phantoms and published data."""
from __future__ import annotations

import base64
import csv
import json
import re

import numpy as np
import pytest
from scipy import ndimage

from napari_vbmd.cli import main
from napari_vbmd.evaluation.metrics import roc_auc, segmentation_metrics
from napari_vbmd.evaluation.study import (
    case_id_of,
    cases_from_csv,
    cases_from_folders,
    evaluate_cases,
    summarize,
)
from napari_vbmd.io import read_mask, read_scan, write_image, write_mask
from napari_vbmd.measure import measure_vbmd
from napari_vbmd.phantom import PhantomSpec, generate_phantom, write_phantom

SMALL = dict(n_slices=30, spacing_mm=0.25)
BALL = ndimage.generate_binary_structure(3, 1)


def _perturbations(truth):
    return {
        "p1": ndimage.binary_dilation(truth, BALL),
        "p2": ndimage.binary_erosion(truth, BALL),
        "p3": np.roll(truth, 2, axis=2),
        "p4": truth.copy(),
    }


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    """Four phantoms: scans and true masks side by side, predictions (NIfTI) in their own folder."""
    root = tmp_path_factory.mktemp("evaluation")
    cases, predicted, probability = root / "cases", root / "predicted", root / "probability"
    for folder in (cases, predicted, probability):
        folder.mkdir()
    phantoms, masks = {}, {}
    for i, name in enumerate(["p1", "p2", "p3", "p4"]):
        phantom = generate_phantom(PhantomSpec(seed=20 + i, **SMALL))
        write_phantom(phantom, cases, name)
        truth = phantom.truth.data != 0
        masks[name] = _perturbations(truth)[name]
        write_mask(predicted / f"{name}_pred.nii.gz", phantom.truth.with_data(masks[name].astype(np.uint8)))
        phantoms[name] = phantom
    blurred = ndimage.gaussian_filter(phantoms["p1"].truth.data.astype(np.float32), 1.0)
    prob_scan = phantoms["p1"].image.with_data(blurred, unit="unknown", calibration=None)
    write_image(probability / "p1_prob.nii.gz", prob_scan)
    return {"root": root, "cases": cases, "predicted": predicted, "probability": probability,
            "phantoms": phantoms, "masks": masks, "prob": blurred}


def test_case_ids_from_file_names(tmp_path):
    (tmp_path / "C0001234").mkdir()
    assert case_id_of(tmp_path / "C0001234") == ("C0001234", False)
    assert case_id_of(tmp_path / "C0001234.AIM;1") == ("C0001234", False)
    assert case_id_of(tmp_path / "C0001234_MASK.AIM") == ("C0001234", True)
    assert case_id_of(tmp_path / "case-7_seg.nii.gz") == ("case-7", True)
    assert case_id_of(tmp_path / "mask.nii") == ("mask", False)  # a role word alone is a name
    assert case_id_of(tmp_path / "notes.txt") is None


def test_folders_are_matched_by_case_id(study, tmp_path):
    cases = cases_from_folders(study["cases"], study["cases"], study["predicted"], study["probability"])
    assert [c.case_id for c in cases] == ["p1", "p2", "p3", "p4"]
    p1 = cases[0]
    assert p1.image.name == "p1.aim" and p1.reference.name == "p1_mask.aim" and p1.predicted.name == "p1_pred.nii.gz"
    assert p1.probability.name == "p1_prob.nii.gz" and p1.error is None
    assert cases[1].error is None and cases[1].probability is None  # optional: no AUC for p2
    # a predicted mask without a scan, and a scan without a predicted mask
    lone = tmp_path / "pred"
    lone.mkdir()
    (lone / "p2_pred.nii.gz").write_bytes((study["predicted"] / "p2_pred.nii.gz").read_bytes())
    (lone / "zz_pred.nii.gz").write_bytes(b"x")
    cases = {c.case_id: c for c in cases_from_folders(study["cases"], study["cases"], lone)}
    assert cases["p1"].error == "no predicted mask found" and cases["p2"].error is None
    assert "no scan named like zz_pred.nii.gz" in cases["zz"].error


def test_metrics_and_vbmd_of_each_case_match_direct_computation(study):
    cases = cases_from_folders(study["cases"], study["cases"], study["predicted"])
    results = evaluate_cases(cases)
    assert all(r.ok for r in results)
    for r in results:
        name = r.row["case"]
        phantom = study["phantoms"][name]
        truth = phantom.truth.data != 0
        pred = study["masks"][name]
        direct = segmentation_metrics(truth, pred, phantom.image.spacing)
        for key in ("dice", "iou", "accuracy", "hd95_mm", "assd_mm", "hausdorff_mm", "volume_difference_mm3"):
            assert r.row[key] == pytest.approx(direct[key]), (name, key)
        assert r.row["d100_reference"] == pytest.approx(measure_vbmd(phantom.image, truth).d100_mg_ha_cm3)
        assert r.row["d100_predicted"] == pytest.approx(measure_vbmd(phantom.image, pred).d100_mg_ha_cm3)
        assert r.slices and all(s["case"] == name for s in r.slices)
        assert r.preview is not None and r.preview.reference.shape == r.preview.density.shape
    by_name = {r.row["case"]: r.row for r in results}
    assert by_name["p4"]["dice"] == 1.0 and by_name["p4"]["hd95_mm"] == 0 and by_name["p4"]["d100_difference"] == 0
    assert by_name["p1"]["volume_difference_mm3"] > 0 > by_name["p2"]["volume_difference_mm3"]
    assert by_name["p3"]["hausdorff_mm"] <= 2 * 0.25 + 1e-9  # a 2-voxel shift moves no surface point farther
    summary = summarize(results)
    assert summary["metrics"]["dice"]["n"] == 4
    assert summary["metrics"]["dice"]["mean"] == pytest.approx(np.mean([by_name[n]["dice"] for n in by_name]))
    agree = summary["d100_agreement"]
    assert agree["n"] == 4
    assert agree["bland_altman"]["bias"] == pytest.approx(np.mean([by_name[n]["d100_difference"] for n in by_name]))
    assert summary["worst_cases"][0] == min(by_name, key=lambda n: by_name[n]["dice"])


def test_probability_map_gives_the_auc(study):
    [case] = [c for c in cases_from_folders(study["cases"], study["cases"], study["predicted"], study["probability"])
              if c.case_id == "p1"]
    [result] = evaluate_cases([case])
    truth = study["phantoms"]["p1"].truth.data != 0
    assert result.row["auc"] == pytest.approx(roc_auc(truth, study["prob"]), abs=1e-6)
    assert 0.99 < result.row["auc"] <= 1.0


def test_a_broken_case_fails_alone(study, tmp_path):
    (tmp_path / "p2_pred.nii.gz").write_text("not a NIfTI")
    rows = tmp_path / "cases.csv"
    rows.write_text(
        "case,image,reference,predicted\n"
        f"p1,{study['cases'] / 'p1.aim'},{study['cases'] / 'p1_mask.aim'},{study['predicted'] / 'p1_pred.nii.gz'}\n"
        f"p2,{study['cases'] / 'p2.aim'},{study['cases'] / 'p2_mask.aim'},p2_pred.nii.gz\n"
        f"p3,{study['cases'] / 'p3.aim'},,{study['predicted'] / 'p3_pred.nii.gz'}\n"
        f"p4,{study['cases'] / 'p4_mask.aim'},{study['cases'] / 'p4_mask.aim'},{study['predicted'] / 'p4_pred.nii.gz'}\n"
    )
    cases = cases_from_csv(rows)
    assert cases[1].predicted == tmp_path / "p2_pred.nii.gz"  # relative to the CSV's folder
    results = evaluate_cases(cases)
    status = {r.row["case"]: (r.row["status"], r.row["error"]) for r in results}
    assert status["p1"] == ("ok", None)
    assert status["p2"][0] == "failed" and "predicted mask" in status["p2"][1] and "p2_pred.nii.gz" in status["p2"][1]
    assert status["p3"] == ("failed", "row 4 of cases.csv: no reference")
    assert status["p4"][0] == "failed" and "is a mask, not a greyscale scan" in status["p4"][1]
    assert all("\n" not in (e or "") for _, e in status.values())


def _pngs(html_text):
    return [base64.b64decode(b) for b in re.findall(r'src="data:image/png;base64,([^"]+)"', html_text)]


def test_vbmd_evaluate_writes_csvs_and_reports(study, tmp_path, capsys):
    bad = tmp_path / "pred"
    bad.mkdir()
    for name in ("p1", "p2", "p3"):
        (bad / f"{name}_pred.nii.gz").write_bytes((study["predicted"] / f"{name}_pred.nii.gz").read_bytes())
    (bad / "p4_pred.nii.gz").write_text("broken")
    out = tmp_path / "report"
    code = main(["evaluate", "--images", str(study["cases"]), "--reference", str(study["cases"]),
                 "--predicted", str(bad), "-o", str(out), "--json"])
    captured = capsys.readouterr()
    assert code == 1  # one case failed, the others were evaluated
    assert "case p4 failed" in captured.err
    summary = json.loads(captured.out)
    assert summary["n_cases"] == 4 and summary["n_evaluated"] == 3 and summary["n_failed"] == 1
    assert summary["d100_agreement"]["n"] == 3 and "means" not in summary["d100_agreement"]["bland_altman"]
    with open(out / "evaluation_cases.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["case"] for r in rows] == ["p1", "p2", "p3", "p4"]
    assert rows[3]["status"] == "failed" and rows[3]["dice"] == ""
    assert summary["metrics"]["dice"]["min"] - 1e-9 <= float(rows[0]["dice"]) <= summary["metrics"]["dice"]["max"] + 1e-9
    with open(out / "evaluation_slices.csv", newline="") as fh:
        slices = list(csv.DictReader(fh))
    assert {s["case"] for s in slices} == {"p1", "p2", "p3"}
    html_text = (out / "evaluation_report.html").read_text()
    pngs = _pngs(html_text)
    assert len(pngs) == 3 + 3  # scatter, Bland-Altman, distribution, one slice per evaluated case
    assert all(p.startswith(b"\x89PNG\r\n\x1a\n") for p in pngs)
    assert "Failed cases" in html_text and "p4_pred.nii.gz" in html_text and "Pearson r" in html_text
    pdf = (out / "evaluation_report.pdf").read_bytes()
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type /Page\b", pdf)) == 1 + 3 + 3
    assert not list(out.glob(".*part*"))  # no temporary files left behind


def test_vbmd_evaluate_bad_arguments_are_one_line_errors(study, tmp_path, capsys):
    assert main(["evaluate", "--images", str(study["cases"]), "-o", str(tmp_path / "r")]) == 2
    assert main(["evaluate", "--images", str(tmp_path / "missing"), "--reference", str(study["cases"]),
                 "--predicted", str(study["predicted"]), "-o", str(tmp_path / "r")]) == 2
    (tmp_path / "c.csv").write_text("case,image\nA,a.aim\n")
    assert main(["evaluate", "--cases", str(tmp_path / "c.csv"), "-o", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3
    assert "give --cases CSV, or all three" in err[0]
    assert "scan folder does not exist" in err[1]
    assert "missing column(s) reference, predicted" in err[2]


SHROUT_FLEISS_CSV = "target,judge1,judge2,judge3,judge4\n1,9,2,5,8\n2,6,1,3,2\n3,8,4,6,8\n4,7,1,2,6\n5,10,5,6,9\n6,6,2,4,7\n"


def test_vbmd_agreement_json_and_table(tmp_path, capsys):
    path = tmp_path / "judges.csv"
    path.write_text(SHROUT_FLEISS_CSV)
    assert main(["agreement", str(path), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["n"] == 6 and result["columns"] == ["judge1", "judge2", "judge3", "judge4"]
    published = {"ICC(1,1)": 0.17, "ICC(2,1)": 0.29, "ICC(3,1)": 0.71, "ICC(1,k)": 0.44, "ICC(2,k)": 0.62, "ICC(3,k)": 0.91}
    for form, value in published.items():
        assert round(result["icc"][form]["value"], 2) == value
        assert len(result["icc"][form]["ci95"]) == 2
    assert result["pearson_r"] is None and result["bland_altman"] is None  # four columns

    assert main(["agreement", str(path), "--columns", "judge1,judge3", "--json"]) == 0
    two = json.loads(capsys.readouterr().out)
    ba = two["bland_altman"]
    for key in ("bias", "sd", "loa_low", "loa_high", "bias_ci95", "loa_low_ci95", "loa_high_ci95", "proportional_bias_p"):
        assert key in ba
    assert ba["bias"] == pytest.approx(np.mean([9 - 5, 6 - 3, 8 - 6, 7 - 2, 10 - 6, 6 - 4]))
    for key in ("pearson_r", "pearson_p", "spearman_rho", "spearman_p"):
        assert isinstance(two[key], float)

    assert main(["agreement", str(path)]) == 0
    table = capsys.readouterr().out
    assert "ICC(3,k)" in table and "0.909" in table and "Bland-Altman" not in table
    assert main(["agreement", str(path), "--columns", "judge1,judge3"]) == 0
    assert "Bland-Altman (judge1 - judge3)" in capsys.readouterr().out


def test_vbmd_agreement_errors(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text("a,b\n1,2\n3,x\n5,6\n")
    assert main(["agreement", str(path)]) == 2
    assert main(["agreement", str(tmp_path / "none.csv")]) == 2
    path.write_text(SHROUT_FLEISS_CSV)
    assert main(["agreement", str(path), "--columns", "judge1,nobody"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 3 and all(line.startswith("vbmd agreement: error: ") for line in err)
    assert "not a number" in err[0] and "no such file" in err[1] and "no column named nobody" in err[2]


def test_read_masks_written_by_the_fixture_align(study):
    # The predicted NIfTI masks carry the phantom's geometry, so they land on the scan's grid.
    image = read_scan(study["cases"] / "p3.aim")
    mask = read_mask(study["predicted"] / "p3_pred.nii.gz", like=image)
    assert np.array_equal(mask.data != 0, study["masks"]["p3"])


def test_each_case_says_which_hand_its_mask_was_made_for(study, tmp_path):
    """A mask from `vbmd segment` records the side and its source; otherwise a header's hand is used."""
    from napari_vbmd.cli import main

    results = {r.row["case"]: r.row for r in evaluate_cases(cases_from_folders(study["cases"], study["cases"],
                                                                                study["predicted"]))}
    phantom = study["phantoms"]["p1"]
    assert (results["p1"]["hand"], results["p1"]["hand_source"]) == (phantom.image.hand, "header")
    predicted = tmp_path / "predicted"
    predicted.mkdir()
    # given as the argument, the mask's own record says so (not the header's). The default model: on this small
    # phantom the classical method takes MC3 in with MC2 (2.7 times the volume, two bones on 12 of 30 slices),
    # which is refused since the two-bones check
    hand = phantom.image.hand
    assert main(["segment", str(study["cases"] / "p1.aim"), "-o", str(predicted / "p1_pred.aim"), "--model",
                 "default", "--hand", hand]) == 0
    row = evaluate_cases(cases_from_folders(study["cases"], study["cases"], predicted))[0].row
    assert (row["case"], row["hand"], row["hand_source"]) == ("p1", hand, "argument")
