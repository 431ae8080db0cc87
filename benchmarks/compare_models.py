"""Two or more models' per-case evaluations side by side, paired case by case.

    python benchmarks/compare_models.py REFERENCE.csv CANDIDATE.csv [MORE.csv ...] [--label NAME ...] [--by motion ...]

Each CSV holds one model's rows for the same cases, as benchmarks/eval_default_model.py --csv and
benchmarks/eval_independent.py write them (columns ``case``, ``dice``, ``d100_error_pct``, optional
``failure``; shards of one run may be given as ``A0.csv+A1.csv``, and one model's columns of a CSV
that holds several as ``FILE@PREFIX``, e.g. ``docs/fresh-broad-32000.csv@candidate_c``). A case meets the lines (issue 20) when
Dice >= 0.97 and |D100 error| <= 1.5 %; a refusal (``failure`` set, or no D100) is a miss.

Prints a Markdown table per model (both lines met, Dice, |D100 error|, mean and median error, refusals)
and, for every model after the first against the first, the cases it newly meets and newly misses with
an exact two-sided sign test on them (``scipy.stats.binomtest``): a gain of 10 cases against 6 lost is
p = 0.45, not a difference; 0 against 6 is p = 0.03. ``--by COLUMN`` adds counts per value of a column
(``motion``, ``erosions``, ``fov``/``field``, ``spacing_mm``/``voxel_mm``, ``hand``).
"""
from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

import numpy as np
from scipy.stats import binomtest

sys.path.insert(0, str(Path(__file__).resolve().parent))

# issue 20's lines, as the independent family's evaluation judges them
from eval_independent import DICE_TARGET as DICE_LINE, ERROR_TARGET_PCT as ERROR_LINE_PCT  # noqa: E402


class InputError(Exception):
    """A CSV that cannot be compared: one line naming the file and the problem (exit 2)."""


def read_rows(spec: str) -> dict[str, dict]:
    """One model's rows by case: a CSV, several shards joined with '+', or ``FILE@PREFIX`` for one model's
    columns ``PREFIX_dice``, ``PREFIX_error_pct`` (and ``PREFIX_refused``) of a CSV that holds several."""
    spec, _, prefix = spec.partition("@")
    wanted = {"case", f"{prefix}_dice", f"{prefix}_error_pct"} if prefix else {"case", "dice", "d100_error_pct"}
    rows: dict[str, dict] = {}
    for part in spec.split("+"):
        path = Path(part)
        try:
            with path.open(newline="", encoding="utf-8") as fh:
                reader = csv.DictReader(fh)
                missing = wanted - set(reader.fieldnames or [])
                if missing:
                    raise InputError(f"{path}: not a per-case evaluation CSV (missing {', '.join(sorted(missing))})")
                for row in reader:
                    if row["case"] in rows:
                        raise InputError(f"{path}: case {row['case']} appears twice")
                    if prefix:
                        row = {**row, "dice": row[f"{prefix}_dice"], "d100_error_pct": row[f"{prefix}_error_pct"],
                               "failure": row.get(f"{prefix}_refused", "")}
                    rows[row["case"]] = row
        except OSError as exc:
            raise InputError(f"{path}: {exc.strerror or exc}") from None
    if not rows:
        raise InputError(f"{spec}: no cases")
    return rows


def _number(text) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def case_values(row: dict) -> tuple[float, float, bool]:
    """(Dice, signed D100 error %, refused) of one row; a refusal has Dice 0 and no error."""
    error = _number(row.get("d100_error_pct"))
    refused = bool(row.get("failure")) or math.isnan(error)
    if refused:
        return 0.0, error, True
    dice = _number(row.get("dice"))
    if math.isnan(dice):
        raise InputError(f"case {row.get('case')}: Dice {row.get('dice')!r} is not a number")
    return dice, error, False


def meets(row: dict) -> bool:
    dice, error, refused = case_values(row)
    return not refused and dice >= DICE_LINE and abs(error) <= ERROR_LINE_PCT


def summary(rows: dict[str, dict]) -> dict:
    values = [case_values(r) for r in rows.values()]
    dices = np.array([v[0] for v in values])
    errors = np.array([v[1] for v in values if not v[2]])
    return {
        "n": len(values),
        "met": sum(meets(r) for r in rows.values()),
        "dice_mean": float(dices.mean()), "dice_min": float(dices.min()),
        "dice_ok": int((dices >= DICE_LINE).sum()),
        "abs_error_mean": float(np.abs(errors).mean()) if errors.size else math.nan,
        "abs_error_max": float(np.abs(errors).max()) if errors.size else math.nan,
        "error_ok": int((np.abs(errors) <= ERROR_LINE_PCT).sum()),
        "error_mean": float(errors.mean()) if errors.size else math.nan,
        "error_median": float(np.median(errors)) if errors.size else math.nan,
        "refused": sum(v[2] for v in values),
    }


def paired(reference: dict[str, dict], candidate: dict[str, dict]) -> dict:
    """Cases the candidate newly meets and newly misses against the reference, and the sign test on them."""
    gained = sorted(c for c in reference if meets(candidate[c]) and not meets(reference[c]))
    lost = sorted(c for c in reference if meets(reference[c]) and not meets(candidate[c]))
    n = len(gained) + len(lost)
    p = binomtest(len(gained), n).pvalue if n else 1.0
    return {"gained": gained, "lost": lost, "p": float(p)}


def _group_order(value: str) -> tuple:
    """Numbers in numeric order, then words in alphabetical order."""
    number = _number(value)
    return (1, 0.0, value) if math.isnan(number) else (0, number, value)


def _p(p: float) -> str:
    return "p < 0.001" if p < 0.001 else f"p = {p:.3f}"


def compare(models: list[tuple[str, dict[str, dict]]], by: list[str] = ()) -> str:
    cases = set(models[0][1])
    for label, rows in models[1:]:
        if set(rows) != cases:
            only = sorted(cases ^ set(rows))[:5]
            raise InputError(f"{label}: not the same cases as {models[0][0]} (e.g. {', '.join(only)})")
    lines = [
        f"| model | both lines met | Dice mean (min) | Dice ≥ {DICE_LINE} | \\|D100 error\\| mean / max "
        f"| \\|error\\| ≤ {ERROR_LINE_PCT} % | mean (median) D100 error | refused |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for label, rows in models:
        s = summary(rows)
        lines.append(
            f"| {label} | {s['met']} / {s['n']} | {s['dice_mean']:.4f} ({s['dice_min']:.4f}) | {s['dice_ok']} "
            f"| {s['abs_error_mean']:.2f} / {s['abs_error_max']:.2f} % | {s['error_ok']} "
            f"| {s['error_mean']:+.2f} % ({s['error_median']:+.2f} %) | {s['refused']} |")
    reference_label, reference = models[0]
    for label, rows in models[1:]:
        d = paired(reference, rows)
        lines += [
            "",
            f"{label} against {reference_label}: newly meets {len(d['gained'])}, newly misses {len(d['lost'])} "
            f"(exact sign test on those {len(d['gained']) + len(d['lost'])}: {_p(d['p'])})",
            f"- newly meets: {', '.join(d['gained']) or 'none'}",
            f"- newly misses: {', '.join(d['lost']) or 'none'}",
        ]
    for column in by:
        first = next(iter(reference.values()))
        if column not in first:
            raise InputError(f"--by {column}: no such column (have {', '.join(first)})")
        groups = sorted({r[column] for r in reference.values()}, key=_group_order)
        lines += ["", f"| {column} | n | " + " | ".join(f"{label}: met" for label, _ in models) + " |",
                  "|---|---|" + "---|" * len(models)]
        for value in groups:
            members = [c for c, r in reference.items() if r[column] == value]
            counts = [sum(meets(rows[c]) for c in members) for _, rows in models]
            lines.append(f"| {value} | {len(members)} | " + " | ".join(map(str, counts)) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("csv", nargs="+", help="per-case CSVs, the reference first; shards joined with '+'")
    parser.add_argument("--label", action="append", default=[], help="a name per CSV, in order")
    parser.add_argument("--by", action="append", default=[], help="also count per value of this column")
    args = parser.parse_args(argv)
    if len(args.csv) < 2:
        parser.error("give at least two CSVs: the reference and a candidate")
    if args.label and len(args.label) != len(args.csv):
        parser.error(f"{len(args.label)} labels for {len(args.csv)} CSVs")
    labels = args.label or [spec.partition("@")[2] or Path(spec.split("+")[0]).stem for spec in args.csv]
    try:
        print(compare([(label, read_rows(spec)) for label, spec in zip(labels, args.csv)], args.by))
    except InputError as exc:
        print(f"compare_models: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
