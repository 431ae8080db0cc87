"""Paired comparison of two models' per-case evaluations (benchmarks/compare_models.py)."""
from __future__ import annotations

import csv
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import compare_models  # noqa: E402


def write(path: Path, rows: list[tuple]) -> str:
    with path.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["case", "motion", "dice", "d100_error_pct", "failure"])
        writer.writerows(rows)
    return str(path)


def test_counts_pairs_and_sign_test(tmp_path, capsys):
    # reference: a, b, c meet the lines; d misses on Dice; e is refused
    ref = write(tmp_path / "ref.csv", [("a", 0, 0.99, 0.5, ""), ("b", 0, 0.98, -1.4, ""), ("c", 1, 0.975, 1.0, ""),
                                      ("d", 1, 0.96, 0.2, ""), ("e", 1, 0.0, "nan", "the mask lies on MC3")])
    # candidate split into two shards: loses a (error 1.6) and c (Dice 0.969), gains d and e
    cand0 = write(tmp_path / "cand0.csv", [("a", 0, 0.99, 1.6, ""), ("b", 0, 0.98, 1.5, "")])
    cand1 = write(tmp_path / "cand1.csv", [("c", 1, 0.969, 0.0, ""), ("d", 1, 0.97, -0.3, ""),
                                           ("e", 1, 0.985, 0.4, "")])
    assert compare_models.main([ref, f"{cand0}+{cand1}", "--label", "ref", "--label", "cand", "--by", "motion"]) == 0
    out = capsys.readouterr().out
    assert "| ref | 3 / 5 | 0.7810 (0.0000) | 3 | 0.78 / 1.40 % | 4 | +0.08 % (+0.35 %) | 1 |" in out
    assert "| cand | 3 / 5 | 0.9788 (0.9690) | 4 | 0.76 / 1.60 % | 4 | +0.64 % (+0.40 %) | 0 |" in out
    assert "newly meets 2, newly misses 2 (exact sign test on those 4: p = 1.000)" in out
    assert "- newly meets: d, e" in out and "- newly misses: a, c" in out
    assert "| 0 | 2 | 2 | 1 |" in out and "| 1 | 3 | 1 | 2 |" in out


def test_one_sided_loss_is_significant():
    ref = {f"c{i}": {"case": f"c{i}", "dice": "0.99", "d100_error_pct": "0.1"} for i in range(6)}
    worse = {c: dict(r, d100_error_pct="-3.0") for c, r in ref.items()}
    result = compare_models.paired(ref, worse)
    assert result["gained"] == [] and len(result["lost"]) == 6
    assert result["p"] == pytest.approx(0.03125)


def test_bad_inputs_get_one_line_and_exit_2(tmp_path, capsys):
    ref = write(tmp_path / "ref.csv", [("a", 0, 0.99, 0.5, "")])
    other = write(tmp_path / "other.csv", [("b", 0, 0.99, 0.5, "")])
    bad = tmp_path / "bad.csv"
    bad.write_text("case,score\na,1\n")
    assert compare_models.main([ref, other]) == 2
    assert "other: not the same cases as ref" in capsys.readouterr().err
    assert compare_models.main([ref, str(bad)]) == 2
    assert f"{bad}: not a per-case evaluation CSV (missing d100_error_pct, dice)" in capsys.readouterr().err
    assert compare_models.main([ref, str(tmp_path / "absent.csv")]) == 2
    assert "absent.csv" in capsys.readouterr().err
    assert compare_models.main([ref, ref, "--by", "scanner"]) == 2
    assert "--by scanner: no such column" in capsys.readouterr().err
    empty = write(tmp_path / "empty.csv", [])
    assert compare_models.main([ref, empty]) == 2
    assert f"{empty}: no cases" in capsys.readouterr().err
    garbled = write(tmp_path / "garbled.csv", [("a", 0, "n/a", 0.5, "")])
    assert compare_models.main([ref, garbled]) == 2
    assert "case a: Dice 'n/a' is not a number" in capsys.readouterr().err


def test_one_models_columns_of_a_wide_csv(tmp_path, capsys):
    wide = tmp_path / "wide.csv"
    wide.write_text("case,a_dice,a_error_pct,b_dice,b_error_pct,b_refused\n"
                    "x,0.99,0.2,0.0,,yes\n"
                    "y,0.96,0.1,0.98,-0.4,\n")
    assert compare_models.main([f"{wide}@a", f"{wide}@b"]) == 0
    out = capsys.readouterr().out
    assert "| a | 1 / 2 | 0.9750 (0.9600) |" in out and "| b | 1 / 2 | 0.4900 (0.0000) |" in out
    assert "b against a: newly meets 1, newly misses 1" in out and "- newly meets: y" in out
    assert compare_models.main([f"{wide}@a", f"{wide}@c"]) == 2
    assert "missing c_dice, c_error_pct" in capsys.readouterr().err
