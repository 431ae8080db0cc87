"""Agreement statistics against published figures and independent computations."""
from __future__ import annotations

import numpy as np
import pytest

from napari_vbmd.errors import VbmdError
from napari_vbmd.evaluation.agreement import (
    ICC_FORMS,
    agreement,
    bland_altman,
    correlations,
    icc,
    paired_difference,
    read_agreement_csv,
)

# Shrout & Fleiss (1979), Table 2: six targets rated by four judges.
SHROUT_FLEISS = np.array(
    [[9, 2, 5, 8], [6, 1, 3, 2], [8, 4, 6, 8], [7, 1, 2, 6], [10, 5, 6, 9], [6, 2, 4, 7]], dtype=float
)

# Bland & Altman (1986), Table 1: PEFR (l/min), first reading of the large Wright and the mini Wright meter.
WRIGHT = np.array([494, 395, 516, 434, 476, 557, 413, 442, 650, 433, 417, 656, 267, 478, 178, 423, 427], float)
MINI_WRIGHT = np.array([512, 430, 520, 428, 500, 600, 364, 380, 658, 445, 432, 626, 260, 477, 259, 350, 451], float)


def test_shrout_fleiss_published_iccs():
    result = icc(SHROUT_FLEISS)
    published = {"ICC(1,1)": 0.17, "ICC(2,1)": 0.29, "ICC(3,1)": 0.71, "ICC(1,k)": 0.44, "ICC(2,k)": 0.62, "ICC(3,k)": 0.91}
    assert list(result) == list(ICC_FORMS)
    for form, value in published.items():
        assert round(result[form]["value"], 2) == value, form


def test_shrout_fleiss_confidence_intervals_match_psych_icc():
    # R psych::ICC on the same data prints these bounds (and F 1.8 / 11.0, df 5,18 / 5,15).
    bounds = {
        "ICC(1,1)": (-0.133, 0.72), "ICC(2,1)": (0.019, 0.76), "ICC(3,1)": (0.342, 0.95),
        "ICC(1,k)": (-0.884, 0.91), "ICC(2,k)": (0.071, 0.93), "ICC(3,k)": (0.676, 0.99),
    }
    result = icc(SHROUT_FLEISS)
    for form, (low, high) in bounds.items():
        got_low, got_high = result[form]["ci95"]
        assert got_low == pytest.approx(low, abs=6e-4), form
        assert got_high == pytest.approx(high, abs=6e-3), form
        assert got_low <= result[form]["value"] <= got_high
    assert result["ICC(1,1)"]["F"] == pytest.approx(1.79, abs=0.005)
    assert (result["ICC(1,1)"]["df1"], result["ICC(1,1)"]["df2"]) == (5, 18)
    assert result["ICC(3,1)"]["F"] == pytest.approx(11.03, abs=0.005)
    assert (result["ICC(3,1)"]["df1"], result["ICC(3,1)"]["df2"]) == (5, 15)
    assert result["ICC(3,1)"]["p"] == pytest.approx(0.000135, abs=1e-6)


def test_icc_of_identical_raters_is_one_and_of_constant_ratings_is_nan():
    x = np.array([1.0, 4.0, 2.0, 8.0, 5.0])
    result = icc(np.column_stack([x, x, x]))
    for form in ICC_FORMS:
        assert result[form]["value"] == pytest.approx(1.0)
    constant = icc(np.ones((4, 2)))
    assert np.isnan(constant["ICC(2,1)"]["value"])


def test_icc_consistency_ignores_an_offset_but_absolute_agreement_does_not():
    rng = np.random.default_rng(0)
    x = rng.normal(300, 40, size=30)
    y = x + 25.0 + rng.normal(0, 2, size=30)
    result = icc(np.column_stack([x, y]))
    assert result["ICC(3,1)"]["value"] > 0.99
    assert result["ICC(2,1)"]["value"] < result["ICC(3,1)"]["value"] - 0.1


def test_bland_altman_peak_flow_published_figures():
    ba = bland_altman(WRIGHT, MINI_WRIGHT, multiplier=2.0)  # the 1986 paper used mean ± 2 SD
    assert round(ba["bias"], 1) == -2.1
    assert round(ba["sd"], 1) == 38.8
    # Published: limits -79.7 and 75.5 l/min (from the rounded -2.1 and 38.8); 95% CI of the bias -22.0 to 17.8.
    assert ba["loa_low"] == pytest.approx(-79.7, abs=0.1)
    assert ba["loa_high"] == pytest.approx(75.5, abs=0.1)
    assert ba["bias_ci95"] == pytest.approx([-22.0, 17.8], abs=0.1)
    assert ba["differences"][0] == 494 - 512  # first minus second


def test_bland_altman_limits_and_their_confidence_intervals():
    ba = bland_altman(WRIGHT, MINI_WRIGHT)
    d = WRIGHT - MINI_WRIGHT
    n, s = d.size, d.std(ddof=1)
    assert ba["loa_low"] == pytest.approx(d.mean() - 1.96 * s)
    assert ba["loa_high"] == pytest.approx(d.mean() + 1.96 * s)
    # Bland & Altman 1999: SE of a limit = s * sqrt(1/n + 1.96^2 / (2 (n-1))); t on 16 df = 2.12.
    half = 2.1199 * s * np.sqrt(1 / n + 1.96**2 / (2 * (n - 1)))
    assert ba["loa_low_ci95"] == pytest.approx([ba["loa_low"] - half, ba["loa_low"] + half], abs=0.01)
    assert ba["loa_high_ci95"][1] - ba["loa_high_ci95"][0] == pytest.approx(2 * half, abs=0.01)
    # No proportional bias in these data; a constructed one is found.
    assert ba["proportional_bias_p"] > 0.5
    x = np.linspace(100, 400, 20)
    y = 0.8 * x + np.sin(np.arange(20))
    prop = bland_altman(x, y)
    assert prop["proportional_bias_slope"] > 0.1 and prop["proportional_bias_p"] < 1e-6


def test_correlations_and_paired_difference():
    c = correlations(WRIGHT, MINI_WRIGHT)
    assert round(c["pearson_r"], 2) == 0.94  # Bland & Altman 1986 quote r = 0.94
    assert c["pearson_p"] < 0.001
    assert 0 < c["spearman_rho"] < 1 and c["spearman_p"] < 0.001
    pd = paired_difference(WRIGHT, MINI_WRIGHT)
    assert pd["mean_difference"] == pytest.approx(-2.1176, abs=1e-4)
    assert pd["ci95"] == pytest.approx(bland_altman(WRIGHT, MINI_WRIGHT)["bias_ci95"])
    assert pd["df"] == 16 and 0.8 < pd["p"] < 0.85


def test_agreement_of_two_and_of_more_columns():
    two = agreement(np.column_stack([WRIGHT, MINI_WRIGHT]), ["wright", "mini"])
    assert two["n"] == 17 and two["bland_altman"]["bias"] == pytest.approx(-2.1176, abs=1e-4)
    assert two["pearson_r"] == pytest.approx(correlations(WRIGHT, MINI_WRIGHT)["pearson_r"])
    four = agreement(SHROUT_FLEISS)
    assert four["bland_altman"] is None and four["pearson_r"] is None
    assert round(four["icc"]["ICC(3,k)"]["value"], 2) == 0.91


def _write(tmp_path, text, name="ratings.csv"):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_read_csv_with_case_ids_and_column_choice(tmp_path):
    path = _write(tmp_path, "case,expert,model,other\nA,1,2,3\nB,4,5,6\nC,7,8,10\n")
    names, ids, table = read_agreement_csv(path)
    assert names == ["expert", "model", "other"] and ids == ["A", "B", "C"]
    assert table.tolist() == [[1, 2, 3], [4, 5, 6], [7, 8, 10]]
    names, _, table = read_agreement_csv(path, columns=["model", "expert"])
    assert names == ["model", "expert"] and table[:, 0].tolist() == [2, 5, 8]


@pytest.mark.parametrize(
    "text, message",
    [
        ("a,b\n1,2\n3,\n5,6\n", "missing a value"),
        ("a\n1\n2\n3\n", "at least 2 numeric columns"),
        ("a,b\n1,2\n3,x\n5,6\n", "not a number"),
        ("a,b\n1,2\n3,4\n", "at least 3 cases"),
        ("1,2\n3,4\n5,6\n7,8\n", "name the columns"),
        ("a,b\n1,2,3\n3,4\n5,6\n", "row 2 has 3 cells"),
        ("", "empty"),
    ],
)
def test_bad_csv_is_one_line_error(tmp_path, text, message):
    path = _write(tmp_path, text)
    with pytest.raises(VbmdError) as info:
        read_agreement_csv(path)
    assert message in str(info.value)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_numeric_case_ids_in_a_column_named_like_an_id(tmp_path):
    path = _write(tmp_path, "target,j1,j2\n1,9,2\n2,6,1\n3,8,4\n")
    names, ids, table = read_agreement_csv(path)
    assert names == ["j1", "j2"] and ids == ["1", "2", "3"] and table.shape == (3, 2)
