"""Unblinding and statistics of a rating study (owner only).

For each source: the proportion of decided cases (ties left out) in which it was preferred,
with a Wilson 95% interval and a two-sided exact binomial test against 50%, per rater and
pooled over raters; ties counted separately; checks that raters did not simply prefer a colour,
a name ("Contour 1") or the outline drawn on top; and, when several raters rated the same cases,
their agreement (Cohen's kappa for two raters, Fleiss' kappa for more).
"""
from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, ensure_output_folder, write_text_atomic
from ..errors import VbmdError
from ..util import jsonable
from .store import latest_answers, load_all_answers
from .study import Study, load_mapping, load_study, owner_folder

Z_95 = 1.959963984540054
TIE = "equal"


def wilson_interval(successes: int, n: int, z: float = Z_95) -> tuple[float, float] | tuple[None, None]:
    """Wilson score interval for a binomial proportion (Wilson 1927)."""
    if n == 0:
        return None, None
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    lo, hi = max(0.0, centre - half), min(1.0, centre + half)
    # exact bounds at the edges (rounding would otherwise put p = 0 or 1 just outside its interval)
    return (0.0 if successes == 0 else lo), (1.0 if successes == n else hi)


def binomial_p(successes: int, n: int, p: float = 0.5) -> float | None:
    """Two-sided exact binomial test (scipy.stats.binomtest)."""
    if n == 0:
        return None
    from scipy.stats import binomtest

    return float(binomtest(int(successes), int(n), p, alternative="two-sided").pvalue)


def proportion(successes: int, n: int) -> dict:
    lo, hi = wilson_interval(successes, n)
    return {
        "k": int(successes), "n": int(n),
        "proportion": None if n == 0 else successes / n,
        "ci95_low": lo, "ci95_high": hi,
        "p_value": binomial_p(successes, n),
    }


def fleiss_kappa(table) -> float:
    """Fleiss' kappa from a subjects x categories table of rating counts (equal raters per subject)."""
    table = np.asarray(table, dtype=float)
    if table.ndim != 2 or table.shape[0] == 0:
        raise ValueError("need a subjects x categories table")
    raters = table.sum(axis=1)
    if not np.allclose(raters, raters[0]) or raters[0] < 2:
        raise ValueError("every subject needs the same number (>= 2) of ratings")
    n = raters[0]
    p_category = table.sum(axis=0) / table.sum()
    p_subject = ((table * (table - 1)).sum(axis=1)) / (n * (n - 1))
    p_bar = p_subject.mean()
    p_expected = float((p_category**2).sum())
    if math.isclose(p_expected, 1.0):
        return float("nan")  # every rating in one category: agreement by chance is total
    return float((p_bar - p_expected) / (1 - p_expected))


def cohen_kappa(a: list[str], b: list[str]) -> float:
    from sklearn.metrics import cohen_kappa_score

    if len(set(a) | set(b)) < 2:
        return float("nan")  # one category only: chance agreement is total, kappa undefined
    return float(cohen_kappa_score(a, b))


# -- unblinding -----------------------------------------------------------------------------------
def unblind(records: list[dict], study: Study, mapping: dict) -> list[dict]:
    """Each record with the sources revealed: what was preferred and which source had which colour."""
    rows = []
    for record in records:
        case_map = mapping["cases"].get(record["case_id"])
        if case_map is None:
            continue
        shown = {s["name"]: s for s in record["shown"]}
        row = dict(record)
        row["preferred_source"] = case_map[record["chosen_contour_id"]] if record.get("chosen_contour_id") else TIE
        for index, name in ((1, "Contour 1"), (2, "Contour 2")):
            s = shown[name]
            row[f"contour_{index}_source"] = case_map[s["contour_id"]]
            row[f"contour_{index}_colour"] = s["colour"]
            row[f"contour_{index}_on_top"] = s["on_top"]
        top = next(s for s in record["shown"] if s["on_top"])
        row["top_source"] = case_map[top["contour_id"]]
        row["chosen_on_top"] = None if not record.get("chosen_contour_id") else record["chosen_contour_id"] == top["contour_id"]
        row["case_sources"] = sorted(case_map.values())
        rows.append(row)
    return rows


def _preference(rows: list[dict], sources: list[str]) -> dict:
    decided = [r for r in rows if r["preferred_source"] != TIE]
    result = {
        "n_answers": len(rows), "n_decided": len(decided), "ties": len(rows) - len(decided),
        "tie_proportion": None if not rows else (len(rows) - len(decided)) / len(rows),
        "sources": {},
    }
    for source in sources:
        with_source = [r for r in decided if source in r["case_sources"]]
        k = sum(1 for r in with_source if r["preferred_source"] == source)
        result["sources"][source] = proportion(k, len(with_source))
    return result


def _bias(rows: list[dict], colours: list[str]) -> dict:
    decided = [r for r in rows if r["preferred_source"] != TIE]
    n = len(decided)
    first_colour = colours[0]
    return {
        "colour": {"chose": first_colour, **proportion(sum(1 for r in decided if r["chosen_colour"] == first_colour), n)},
        "name": {"chose": "Contour 1", **proportion(sum(1 for r in decided if r["choice"] == "contour_1"), n)},
        "on_top": {"chose": "outline drawn on top", **proportion(sum(1 for r in decided if r["chosen_on_top"]), n)},
    }


def _agreement(latest_rows: list[dict]) -> dict | None:
    by_case: dict[str, dict[str, str]] = {}
    for r in latest_rows:
        by_case.setdefault(r["case_id"], {})[r["rater_key"]] = r["preferred_source"]
    raters = sorted({r["rater_key"] for r in latest_rows})
    if len(raters) < 2:
        return None
    common = sorted(cid for cid, answers in by_case.items() if all(k in answers for k in raters))
    out: dict = {"raters": raters, "n_common_cases": len(common)}
    if not common:
        out["note"] = "no case was rated by every rater"
        return out
    if len(raters) == 2:
        a = [by_case[c][raters[0]] for c in common]
        b = [by_case[c][raters[1]] for c in common]
        out["method"] = "cohen"
        out["kappa"] = cohen_kappa(a, b)
        out["observed_agreement"] = sum(x == y for x, y in zip(a, b)) / len(common)
    else:
        categories = sorted({v for c in common for v in by_case[c].values()})
        table = [[sum(1 for k in raters if by_case[c][k] == cat) for cat in categories] for c in common]
        out["method"] = "fleiss"
        out["categories"] = categories
        out["kappa"] = fleiss_kappa(table) if len(categories) > 1 else float("nan")
    return out


CSV_COLUMNS = [
    "rater", "case_id", "position", "is_latest", "choice", "chosen_name", "chosen_colour", "preferred_source",
    "contour_1_source", "contour_1_colour", "contour_1_on_top", "contour_2_source", "contour_2_colour",
    "contour_2_on_top", "confidence", "comment", "time_spent_s", "shown_at", "answered_at", "record_id",
    "replaces", "scan", "scan_sha256", "contour_1_sha256", "contour_2_sha256",
]


def answers_csv(rows: list[dict]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=CSV_COLUMNS, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    for r in rows:
        shown = {s["name"]: s for s in r["shown"]}
        writer.writerow({
            **{k: r.get(k) for k in CSV_COLUMNS},
            "contour_1_sha256": shown["Contour 1"]["sha256"], "contour_2_sha256": shown["Contour 2"]["sha256"],
        })
    return buffer.getvalue()


def analyze(records: list[dict], study: Study, mapping: dict) -> tuple[dict, list[dict]]:
    """The statistics (JSON-friendly) and the unblinded rows of all records (history included)."""
    records = [r for r in records if r.get("study_id") == study.study_id]
    rows = unblind(records, study, mapping)
    latest_ids = {r["record_id"] for r in latest_answers(rows).values()}
    for r in rows:
        r["is_latest"] = r["record_id"] in latest_ids
    latest_rows = [r for r in rows if r["is_latest"]]
    sources = list(mapping.get("sources") or sorted({s for r in rows for s in r["case_sources"]}))
    colours = [c[0] for c in study.colours]
    raters = sorted({r["rater_key"] for r in latest_rows})
    names = {r["rater_key"]: r["rater"] for r in latest_rows}
    per_rater = {}
    for key in raters:
        mine = [r for r in latest_rows if r["rater_key"] == key]
        per_rater[names[key]] = {
            "n_rated": len(mine),
            "n_changed": sum(1 for r in rows if r["rater_key"] == key and r.get("replaces")),
            "median_time_s": float(np.median([r["time_spent_s"] for r in mine])) if mine else None,
            **_preference(mine, sources),
            "bias": _bias(mine, colours),
        }
    rated_cases = {r["case_id"] for r in latest_rows}
    summary = {
        "study_id": study.study_id,
        "title": mapping.get("title"),
        "n_cases": study.n_cases,
        "n_rated": len(rated_cases),
        "n_raters": len(raters),
        "n_answers": len(latest_rows),
        "n_records": len(rows),
        "sources": sources,
        "pooled": {**_preference(latest_rows, sources), "bias": _bias(latest_rows, colours)},
        "per_rater": per_rater,
        "agreement": _agreement(latest_rows),
        "method": (
            "proportion preferred among decided cases (ties excluded); Wilson 95% interval; two-sided exact "
            "binomial test against 0.5; pooled counts every rater's latest answer per case"
        ),
    }
    return summary, rows


def plot_summary(summary: dict, path: str | Path) -> Path:
    """Bar chart: proportion preferred of the first source with Wilson 95% intervals, per rater and pooled."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    source = summary["sources"][0] if summary["sources"] else None
    groups = [(name, data) for name, data in summary["per_rater"].items()] + [("pooled", summary["pooled"])]
    fig = Figure(figsize=(max(4.5, 1.2 * len(groups) + 2), 3.6), dpi=120)
    ax = fig.add_subplot(1, 1, 1)
    for i, (label, data) in enumerate(groups):
        stats = data["sources"].get(source) if source else None
        if not stats or stats["proportion"] is None:
            continue
        p, lo, hi = stats["proportion"], stats["ci95_low"], stats["ci95_high"]
        ax.bar(i, p, color="#0072B2" if label != "pooled" else "#E69F00", width=0.6)
        ax.errorbar(i, p, yerr=[[max(0.0, p - lo)], [max(0.0, hi - p)]], color="black", capsize=4)
        ax.text(i, min(hi + 0.03, 1.02), f"{stats['k']}/{stats['n']}\nties {data['ties']}", ha="center", fontsize=8)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(len(groups)), [g[0] for g in groups], rotation=20)
    ax.set_ylim(0, 1.15)
    ax.set_ylabel(f"{source} preferred (decided cases)" if source else "preferred")
    ax.set_title("Blinded contour preference, Wilson 95% CI")
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png")
    return path


def analyze_study(
    study_dir: str | Path, mapping_path: str | Path | None = None, out_dir: str | Path | None = None
) -> dict:
    """Analyse a study folder; writes answers.csv (sources revealed), summary.json and a plot."""
    from .answers_check import record_problem

    study = load_study(study_dir)
    mapping = load_mapping(study, mapping_path)
    records, reports = load_all_answers(study.folder)
    bad = {name: f"{rep.unreadable}" for name, rep in reports.items() if rep.unreadable}
    for record in records:
        if record["_file"] in bad:
            continue
        problem = record_problem(record, study)
        if problem:
            bad[record["_file"]] = f"answer {record['_file_order'] + 1}: {problem}"
    if bad:
        noun = "answer file is" if len(bad) == 1 else "answer files are"
        raise VbmdError(f"{len(bad)} {noun} not what a rating session writes (nothing was analysed):\n"
                        + "\n".join(f"  answers/{name}: {problem}" for name, problem in sorted(bad.items())),
                        study.folder)
    summary, rows = analyze(records, study, mapping)
    summary["store"] = {
        name: {"torn_last_line": rep.torn_tail, "damaged_lines": rep.damaged_lines} for name, rep in reports.items()
    }
    out = Path(out_dir) if out_dir else owner_folder(study.folder) / "analysis"
    if out.resolve() == study.folder.resolve() or study.folder.resolve() in out.resolve().parents:
        raise VbmdError("lies inside the study folder, which raters get: the analysis unblinds; write it "
                        "elsewhere (default STUDY_DIR-owner/analysis)", out)
    ensure_output_folder(out)
    csv_path = write_text_atomic(out / "answers.csv", answers_csv(rows))
    plot_path = plot_summary(summary, out / "preference.png")
    summary["outputs"] = {"answers_csv": str(csv_path), "plot": str(plot_path), "summary": str(out / "summary.json")}
    write_text_atomic(out / "summary.json", json.dumps(jsonable(summary), indent=2) + "\n")
    return summary


def describe_proportion(stats: dict) -> str:
    """'27/41 = 65.9% (95% CI 50.5-78.4%, p = 0.06)' (or that no case was decided)."""
    if stats["proportion"] is None:
        return "no decided cases"
    return (f"{stats['k']}/{stats['n']} = {100 * stats['proportion']:.1f}% "
            f"(95% CI {100 * stats['ci95_low']:.1f}-{100 * stats['ci95_high']:.1f}%, p = {stats['p_value']:.3g})")


def summary_rows(summary: dict) -> list[tuple[str, str]]:
    """The analysis as (what, value) lines for people: the CLI's table and the owner's widget."""
    rows = [
        ("study", summary.get("title") or summary["study_id"]),
        ("cases rated", f"{summary['n_rated']} of {summary['n_cases']} by {summary['n_raters']} rater(s)"),
    ]
    groups = [(f"rater {name}", data) for name, data in summary["per_rater"].items()]
    groups.append(("pooled", summary["pooled"]))
    for label, data in groups:
        rows.append((f"{label}: decided / ties", f"{data['n_decided']} / {data['ties']}"))
        for source, stats in data["sources"].items():
            rows.append((f"{label}: {source} preferred", describe_proportion(stats)))
        for stats in data["bias"].values():
            rows.append((f"{label}: chose {stats['chose']}", describe_proportion(stats)))
    agreement = summary.get("agreement")
    if agreement and agreement.get("kappa") is not None:
        rows.append((f"agreement ({agreement['method']} kappa)",
                     f"{agreement['kappa']:.3f} over {agreement['n_common_cases']} cases"))
    rows.extend((key, str(path)) for key, path in (summary.get("outputs") or {}).items())
    return rows
