"""Agreement of two or more measurements of the same cases.

Correlations, the paired t-test, the regression for proportional bias and all distribution
quantiles come from scipy.stats. The intraclass correlations are written here because scipy has
none: the six forms of Shrout & Fleiss (1979) with the F-distribution confidence intervals of
Shrout & Fleiss / McGraw & Wong (1996) (the same as R's ``psych::ICC``). Bland–Altman follows
Bland & Altman (1986, 1999).

Convention: rows are cases, columns are raters or methods; differences are always the first
column minus the second.
"""
from __future__ import annotations

import csv
import math
from pathlib import Path

import numpy as np
from scipy import stats

from ..errors import VbmdError

ICC_FORMS = ("ICC(1,1)", "ICC(2,1)", "ICC(3,1)", "ICC(1,k)", "ICC(2,k)", "ICC(3,k)")

ICC_DESCRIPTIONS = {
    "ICC(1,1)": "one-way random, single measurement",
    "ICC(2,1)": "two-way random, absolute agreement, single measurement",
    "ICC(3,1)": "two-way mixed, consistency, single measurement",
    "ICC(1,k)": "one-way random, mean of k measurements",
    "ICC(2,k)": "two-way random, absolute agreement, mean of k measurements",
    "ICC(3,k)": "two-way mixed, consistency, mean of k measurements",
}


def _as_table(ratings, min_rows: int = 2, min_cols: int = 2) -> np.ndarray:
    table = np.asarray(ratings, dtype=np.float64)
    if table.ndim != 2:
        raise VbmdError(f"ratings must be a table of cases x raters, got {table.ndim}-D data")
    n, k = table.shape
    if k < min_cols:
        raise VbmdError(f"need at least {min_cols} columns (raters or methods), got {k}")
    if n < min_rows:
        raise VbmdError(f"need at least {min_rows} cases, got {n}")
    if not np.all(np.isfinite(table)):
        raise VbmdError("ratings contain missing or non-finite values")
    return table


def _pair(first, second, min_rows: int = 3) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(first, dtype=np.float64).ravel()
    b = np.asarray(second, dtype=np.float64).ravel()
    if a.shape != b.shape:
        raise VbmdError(f"the two measurements differ in length ({a.size} and {b.size})")
    table = _as_table(np.column_stack([a, b]), min_rows=min_rows)
    return table[:, 0], table[:, 1]


# -- correlation -------------------------------------------------------------------------------
def correlations(first, second) -> dict:
    """Pearson r and Spearman rho with their two-sided p-values (NaN when a column is constant)."""
    a, b = _pair(first, second)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        nan = float("nan")
        return {"pearson_r": nan, "pearson_p": nan, "spearman_rho": nan, "spearman_p": nan}
    pearson = stats.pearsonr(a, b)
    spearman = stats.spearmanr(a, b)
    return {
        "pearson_r": float(pearson.statistic),
        "pearson_p": float(pearson.pvalue),
        "spearman_rho": float(spearman.statistic),
        "spearman_p": float(spearman.pvalue),
    }


# -- intraclass correlation ---------------------------------------------------------------------
def _anova_mean_squares(table: np.ndarray) -> dict:
    n, k = table.shape
    grand = table.mean()
    ss_total = ((table - grand) ** 2).sum()
    ss_rows = k * ((table.mean(axis=1) - grand) ** 2).sum()  # between targets
    ss_cols = n * ((table.mean(axis=0) - grand) ** 2).sum()  # between judges
    ss_within = ss_total - ss_rows
    ss_error = ss_within - ss_cols
    return {
        "BMS": ss_rows / (n - 1),
        "WMS": ss_within / (n * (k - 1)),
        "JMS": ss_cols / (k - 1),
        "EMS": ss_error / ((n - 1) * (k - 1)),
    }


def _ratio(num: float, den: float) -> float:
    return float(num / den) if den != 0 and np.isfinite(den) else float("nan")


def icc(ratings, confidence: float = 0.95) -> dict[str, dict]:
    """The six Shrout–Fleiss intraclass correlations with confidence intervals.

    Returns ``{"ICC(1,1)": {"value", "ci95": [low, high], "F", "df1", "df2", "p", "description"}, ...}``.
    Values are NaN when the ratings do not vary at all (the ratio is 0/0).
    """
    table = _as_table(ratings)
    n, k = table.shape
    ms = _anova_mean_squares(table)
    bms, wms, jms, ems = ms["BMS"], ms["WMS"], ms["JMS"], ms["EMS"]
    alpha = 1.0 - confidence
    upper_q = 1.0 - alpha / 2.0

    values = {
        "ICC(1,1)": _ratio(bms - wms, bms + (k - 1) * wms),
        "ICC(2,1)": _ratio(bms - ems, bms + (k - 1) * ems + k * (jms - ems) / n),
        "ICC(3,1)": _ratio(bms - ems, bms + (k - 1) * ems),
        "ICC(1,k)": _ratio(bms - wms, bms),
        "ICC(2,k)": _ratio(bms - ems, bms + (jms - ems) / n),
        "ICC(3,k)": _ratio(bms - ems, bms),
    }

    def f_interval(f_obs, df1, df2):
        if not np.isfinite(f_obs):
            return float("nan"), float("nan")
        return f_obs / stats.f.ppf(upper_q, df1, df2), f_obs * stats.f.ppf(upper_q, df2, df1)

    out: dict[str, dict] = {}
    # One-way model: F = BMS / WMS with (n-1, n(k-1)) degrees of freedom.
    f1 = _ratio(bms, wms)
    df1_1, df2_1 = n - 1, n * (k - 1)
    fl, fu = f_interval(f1, df1_1, df2_1)
    p1 = float(stats.f.sf(f1, df1_1, df2_1)) if np.isfinite(f1) else float("nan")
    out["ICC(1,1)"] = _icc_entry(values["ICC(1,1)"], (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1), f1, df1_1, df2_1, p1)
    out["ICC(1,k)"] = _icc_entry(values["ICC(1,k)"], 1 - 1 / fl, 1 - 1 / fu, f1, df1_1, df2_1, p1)

    # Two-way models: F = BMS / EMS with (n-1, (n-1)(k-1)) degrees of freedom.
    f3 = _ratio(bms, ems)
    df1_3, df2_3 = n - 1, (n - 1) * (k - 1)
    fl, fu = f_interval(f3, df1_3, df2_3)
    p3 = float(stats.f.sf(f3, df1_3, df2_3)) if np.isfinite(f3) else float("nan")
    out["ICC(3,1)"] = _icc_entry(values["ICC(3,1)"], (fl - 1) / (fl + k - 1), (fu - 1) / (fu + k - 1), f3, df1_3, df2_3, p3)
    out["ICC(3,k)"] = _icc_entry(values["ICC(3,k)"], 1 - 1 / fl, 1 - 1 / fu, f3, df1_3, df2_3, p3)

    # ICC(2,1): Satterthwaite's approximate degrees of freedom (Shrout & Fleiss 1979, eq. 11;
    # McGraw & Wong 1996, Table 7); ICC(2,k) bounds by the Spearman–Brown step-up of those.
    rho = values["ICC(2,1)"]
    low2 = high2 = float("nan")
    if np.isfinite(rho) and ems > 0:
        fj = jms / ems
        vn = (k - 1) * (n - 1) * (k * rho * fj + n * (1 + (k - 1) * rho) - k * rho) ** 2
        vd = (n - 1) * k**2 * rho**2 * fj**2 + (n * (1 + (k - 1) * rho) - k * rho) ** 2
        if vd > 0:
            v = vn / vd
            f_star = stats.f.ppf(upper_q, n - 1, v)
            f_2star = stats.f.ppf(upper_q, v, n - 1)
            low2 = n * (bms - f_star * ems) / (f_star * (k * jms + (k * n - k - n) * ems) + n * bms)
            high2 = n * (f_2star * bms - ems) / (k * jms + (k * n - k - n) * ems + n * f_2star * bms)
    out["ICC(2,1)"] = _icc_entry(values["ICC(2,1)"], low2, high2, f3, df1_3, df2_3, p3)
    out["ICC(2,k)"] = _icc_entry(
        values["ICC(2,k)"], k * low2 / (1 + (k - 1) * low2), k * high2 / (1 + (k - 1) * high2), f3, df1_3, df2_3, p3
    )
    for form in ICC_FORMS:
        out[form]["description"] = ICC_DESCRIPTIONS[form]
    return {form: out[form] for form in ICC_FORMS}


def _icc_entry(value, low, high, f_value, df1, df2, p) -> dict:
    return {
        "value": float(value),
        "ci95": [float(low), float(high)],
        "F": float(f_value),
        "df1": int(df1),
        "df2": int(df2),
        "p": float(p),
    }


# -- Bland–Altman -------------------------------------------------------------------------------
def bland_altman(first, second, multiplier: float = 1.96, confidence: float = 0.95) -> dict:
    """Bias, SD of differences, limits of agreement with confidence intervals, proportional bias.

    Differences are ``first - second``. Limits are ``bias ± multiplier * SD`` (Bland & Altman 1986
    used 2, the 1999 paper 1.96). The limits' standard error is
    ``SD * sqrt(1/n + multiplier^2 / (2 (n - 1)))`` (Bland & Altman 1999, section 2.3), with a t
    quantile on n - 1 degrees of freedom. Proportional bias: least-squares regression of the
    differences on the pairwise means; its slope, p-value (H0: slope = 0) and intercept.
    """
    a, b = _pair(first, second)
    n = a.size
    diff = a - b
    mean = (a + b) / 2.0
    bias = float(diff.mean())
    sd = float(diff.std(ddof=1))
    t = float(stats.t.ppf(0.5 + confidence / 2.0, n - 1))
    se_bias = sd / math.sqrt(n)
    se_limit = sd * math.sqrt(1.0 / n + multiplier**2 / (2.0 * (n - 1)))
    low, high = bias - multiplier * sd, bias + multiplier * sd
    if np.ptp(mean) > 0:
        fit = stats.linregress(mean, diff)
        slope, intercept, slope_p = float(fit.slope), float(fit.intercept), float(fit.pvalue)
    else:
        slope = intercept = slope_p = float("nan")
    return {
        "n": int(n),
        "bias": bias,
        "sd": sd,
        "multiplier": float(multiplier),
        "loa_low": low,
        "loa_high": high,
        "bias_ci95": [bias - t * se_bias, bias + t * se_bias],
        "loa_low_ci95": [low - t * se_limit, low + t * se_limit],
        "loa_high_ci95": [high - t * se_limit, high + t * se_limit],
        "proportional_bias_slope": slope,
        "proportional_bias_intercept": intercept,
        "proportional_bias_p": slope_p,
        "means": mean.tolist(),
        "differences": diff.tolist(),
    }


def paired_difference(first, second, confidence: float = 0.95) -> dict:
    """Mean of ``first - second`` with its confidence interval and the paired t-test."""
    a, b = _pair(first, second)
    diff = a - b
    if np.ptp(diff) == 0:
        mean = float(diff.mean())
        return {"mean_difference": mean, "ci95": [mean, mean], "t": float("nan"), "df": int(a.size - 1), "p": float("nan")}
    result = stats.ttest_rel(a, b)
    ci = result.confidence_interval(confidence)
    return {
        "mean_difference": float(diff.mean()),
        "ci95": [float(ci.low), float(ci.high)],
        "t": float(result.statistic),
        "df": int(result.df),
        "p": float(result.pvalue),
    }


def agreement(table, names: list[str] | None = None) -> dict:
    """Everything ``vbmd agreement`` reports for a cases x raters table.

    Correlations, Bland–Altman and the paired difference need exactly two columns; ICCs take two
    or more. Keys that do not apply are ``None``.
    """
    table = _as_table(table, min_rows=3)
    n, k = table.shape
    names = list(names) if names is not None else [f"column {i + 1}" for i in range(k)]
    out: dict = {"n": int(n), "columns": names, "icc": icc(table)}
    out["means"] = {name: float(table[:, i].mean()) for i, name in enumerate(names)}
    out["sds"] = {name: float(table[:, i].std(ddof=1)) for i, name in enumerate(names)}
    if k == 2:
        out.update(correlations(table[:, 0], table[:, 1]))
        out["bland_altman"] = bland_altman(table[:, 0], table[:, 1])
        out["paired_difference"] = paired_difference(table[:, 0], table[:, 1])
    else:
        out.update({"pearson_r": None, "pearson_p": None, "spearman_rho": None, "spearman_p": None})
        out["bland_altman"] = None
        out["paired_difference"] = None
    return out


# -- CSV input ----------------------------------------------------------------------------------
def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


#: A first column with one of these names holds case ids even when they are numbers.
ID_COLUMN_NAMES = ("case", "case_id", "id", "subject", "patient", "target", "scan", "name")


def read_agreement_csv(path: str | Path, columns: list[str] | None = None) -> tuple[list[str], list[str], np.ndarray]:
    """Read a cases x raters CSV: a header row, then one row per case.

    A first column that is not numeric, or is named like an id (case, id, subject, patient,
    target, ...), is taken as the case id. ``columns`` picks (and orders)
    columns by name. Returns (column names, case ids, n x k float table). Every problem is one
    VbmdError naming the file, the row and the column.
    """
    path = Path(path)
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            sample = fh.read(4096)
            fh.seek(0)
            try:
                dialect = csv.Sniffer().sniff(sample, delimiters=",;\t")
            except csv.Error:
                dialect = csv.excel
            rows = [row for row in csv.reader(fh, dialect) if any(cell.strip() for cell in row)]
    except FileNotFoundError:
        raise VbmdError("no such file", path) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise VbmdError(f"cannot read as a text CSV ({exc})", path) from None
    if not rows:
        raise VbmdError("the CSV is empty", path)
    header = [cell.strip() for cell in rows[0]]
    body = rows[1:]
    if all(_is_number(cell) for cell in header if cell):
        raise VbmdError("the first row must name the columns (raters or methods)", path)
    if not body:
        raise VbmdError("the CSV has a header but no cases", path)
    for line, row in enumerate(body, start=2):
        if len(row) != len(header):
            raise VbmdError(f"row {line} has {len(row)} cells, the header has {len(header)}", path)
    first_is_id = header[0].lower() in ID_COLUMN_NAMES or not all(
        _is_number(row[0].strip()) for row in body if row[0].strip()
    )
    value_names = header[1:] if first_is_id else header
    offset = 1 if first_is_id else 0
    ids = [row[0].strip() for row in body] if first_is_id else [str(i + 1) for i in range(len(body))]
    if columns:
        missing = [c for c in columns if c not in value_names]
        if missing:
            raise VbmdError(f"no column named {', '.join(missing)} (columns: {', '.join(value_names)})", path)
        picked = [value_names.index(c) for c in columns]
    else:
        picked = list(range(len(value_names)))
    names = [value_names[i] for i in picked]
    table = np.empty((len(body), len(picked)), dtype=np.float64)
    for r, row in enumerate(body):
        for c, i in enumerate(picked):
            cell = row[i + offset].strip()
            if not cell or cell.lower() in ("na", "nan", "none", "null"):
                raise VbmdError(f"row {r + 2} column '{names[c]}' is missing a value", path)
            try:
                table[r, c] = float(cell)
            except ValueError:
                raise VbmdError(f"row {r + 2} column '{names[c]}' is not a number: {cell!r}", path) from None
            if not math.isfinite(table[r, c]):
                raise VbmdError(f"row {r + 2} column '{names[c]}' is not a finite number: {cell!r}", path)
    if table.shape[1] < 2:
        raise VbmdError(f"need at least 2 numeric columns (raters or methods), found {table.shape[1]}", path)
    if table.shape[0] < 3:
        raise VbmdError(f"need at least 3 cases, found {table.shape[0]}", path)
    return names, ids, table
