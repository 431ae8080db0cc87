"""`vbmd agreement CSV`: agreement of two or more raters or methods measuring the same cases."""
from __future__ import annotations

import math
import sys

from ..evaluation.agreement import ICC_FORMS, agreement, read_agreement_csv
from ._output import print_json


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "agreement",
        help="correlation, ICC and Bland-Altman of raters or methods (columns) over cases (rows)",
        description="Agreement of measurements in a CSV: a header row naming the raters or methods, then one "
        "row per case (a first non-numeric column is the case id). Two columns: Pearson, Spearman, Bland-Altman "
        "(differences are first minus second column), paired t-test and the six Shrout-Fleiss ICCs; more "
        "columns: the ICCs.",
    )
    p.add_argument("csv", help="CSV file: columns are raters or methods, rows are cases")
    p.add_argument("--columns", help="comma-separated column names to use, in this order (default: all numeric)")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.set_defaults(func=run)


def _f(value, digits=4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.{digits}f}"


def _p(value) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.2e}"


def run(args) -> int:
    from .._atomic import require_regular_file

    columns = [c.strip() for c in args.columns.split(",")] if args.columns else None
    require_regular_file(args.csv)  # a FIFO would block the read forever
    names, ids, table = read_agreement_csv(args.csv, columns=columns)
    result = agreement(table, names)
    result["cases"] = ids
    if args.json:
        print_json(result)
        return 0
    out = sys.stdout
    out.write(f"{args.csv}: {result['n']} cases, columns {', '.join(names)}\n\n")
    width = max(len("column"), *(len(n) for n in names))
    out.write(f"{'column'.ljust(width)}  {'mean':>10}  {'SD':>10}\n")
    for name in names:
        out.write(f"{name.ljust(width)}  {_f(result['means'][name], 3):>10}  {_f(result['sds'][name], 3):>10}\n")
    if result["pearson_r"] is not None:
        out.write(f"\nPearson r     {_f(result['pearson_r'])}  (p {_p(result['pearson_p'])})\n")
        out.write(f"Spearman rho  {_f(result['spearman_rho'])}  (p {_p(result['spearman_p'])})\n")
    out.write(f"\n{'ICC':<9} {'value':>8}  {'95% CI':>19}  {'F':>8}  {'df':>7}  {'p':>9}  model\n")
    for form in ICC_FORMS:
        e = result["icc"][form]
        ci = f"[{_f(e['ci95'][0], 3)}, {_f(e['ci95'][1], 3)}]"
        out.write(f"{form:<9} {_f(e['value'], 3):>8}  {ci:>19}  {_f(e['F'], 2):>8}  {e['df1']:>3},{e['df2']:<3}  "
                  f"{_p(e['p']):>9}  {e['description']}\n")
    ba = result["bland_altman"]
    if ba is not None:
        first, second = names
        out.write(f"\nBland-Altman ({first} - {second})\n")
        out.write(f"  bias                 {_f(ba['bias'], 3)}  95% CI [{_f(ba['bias_ci95'][0], 3)}, {_f(ba['bias_ci95'][1], 3)}]\n")
        out.write(f"  SD of differences    {_f(ba['sd'], 3)}\n")
        out.write(f"  lower limit          {_f(ba['loa_low'], 3)}  95% CI [{_f(ba['loa_low_ci95'][0], 3)}, {_f(ba['loa_low_ci95'][1], 3)}]\n")
        out.write(f"  upper limit          {_f(ba['loa_high'], 3)}  95% CI [{_f(ba['loa_high_ci95'][0], 3)}, {_f(ba['loa_high_ci95'][1], 3)}]\n")
        out.write(f"  proportional bias    slope {_f(ba['proportional_bias_slope'])}  (p {_p(ba['proportional_bias_p'])})\n")
        pd = result["paired_difference"]
        out.write(f"  paired t-test        t {_f(pd['t'], 3)}, df {pd['df']}, p {_p(pd['p'])}\n")
    return 0
