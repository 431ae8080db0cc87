"""The evaluation report: figures, a self-contained HTML page (PNG figures embedded) and a PDF.

Figures are drawn with matplotlib's object API on the Agg canvas (no pyplot, no GUI backend):
D100 scatter with the identity line, the Bland–Altman plot, the distribution of Dice and HD95 over
the cases, and one slice of each worst case with both contours.
"""
from __future__ import annotations

import base64
import html
import io
from pathlib import Path

import numpy as np

from .._atomic import atomic_path, write_text_atomic
from ..util import is_finite_number, timestamp
from .study import METRIC_LABELS, CaseResult, SlicePreview, summarize, worst_cases

REFERENCE_COLOUR = "#00c853"  # green
PREDICTED_COLOUR = "#ff1744"  # red


def _figure(width=5.0, height=4.2):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110, layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _d100_pairs(results):
    ref, pred, names = [], [], []
    for r in results:
        if r.ok and is_finite_number(r.row["d100_reference"]) and is_finite_number(r.row["d100_predicted"]):
            ref.append(r.row["d100_reference"])
            pred.append(r.row["d100_predicted"])
            names.append(r.row["case"])
    return np.array(ref), np.array(pred), names


def scatter_figure(results, summary):
    ref, pred, _ = _d100_pairs(results)
    fig = _figure()
    ax = fig.add_subplot()
    if ref.size:
        lo = float(min(ref.min(), pred.min()))
        hi = float(max(ref.max(), pred.max()))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], color="0.5", lw=1, ls="--", label="identity")
        ax.scatter(ref, pred, s=28, color="#1565c0", edgecolor="white", lw=0.5, zorder=3, label="case")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        ax.set_aspect("equal")
    agree = summary.get("d100_agreement")
    if agree and agree.get("pearson_r") is not None:
        text = f"n = {agree['n']}\nPearson r = {agree['pearson_r']:.4f}"
        if agree.get("spearman_rho") is not None:
            text += f"\nSpearman ρ = {agree['spearman_rho']:.4f}"
        ax.text(0.04, 0.96, text, transform=ax.transAxes, va="top", fontsize=9,
                bbox=dict(boxstyle="round", fc="white", ec="0.8"))
    ax.set_xlabel("D100 reference mask (mg HA/cm³)")
    ax.set_ylabel("D100 predicted mask (mg HA/cm³)")
    ax.set_title("D100: predicted vs reference")
    if ref.size:
        ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def bland_altman_figure(results, summary):
    fig = _figure()
    ax = fig.add_subplot()
    agree = summary.get("d100_agreement")
    ba = agree.get("bland_altman") if agree else None
    if ba:
        means, diffs = np.array(ba["means"]), np.array(ba["differences"])
        ax.scatter(means, diffs, s=28, color="#1565c0", edgecolor="white", lw=0.5, zorder=3)
        for key, label, style in (("bias", "bias", "-"), ("loa_high", "+1.96 SD", "--"), ("loa_low", "−1.96 SD", "--")):
            ax.axhline(ba[key], color="#c62828" if key == "bias" else "0.35", ls=style, lw=1)
            ax.annotate(f"{label} {ba[key]:.2f}", xy=(1.0, ba[key]), xycoords=("axes fraction", "data"),
                        xytext=(-4, 3), textcoords="offset points", ha="right", fontsize=8)
        ci = ba["bias_ci95"]
        ax.axhspan(ci[0], ci[1], color="#c62828", alpha=0.08, lw=0)
        ax.axhline(0, color="0.7", lw=0.8)
        span = max(abs(ba["loa_low"]), abs(ba["loa_high"]), float(np.abs(diffs).max()), 1e-3)
        ax.set_ylim(-1.35 * span, 1.35 * span)
    else:
        ax.text(0.5, 0.5, "needs at least 3 cases with both D100 values", ha="center", transform=ax.transAxes)
    ax.set_xlabel("mean of predicted and reference D100 (mg HA/cm³)")
    ax.set_ylabel("predicted − reference D100 (mg HA/cm³)")
    ax.set_title("Bland–Altman")
    ax.grid(alpha=0.3)
    return fig


def distribution_figure(results):
    ok = [r for r in results if r.ok]
    fig = _figure(7.0, 3.0)
    for i, (key, label) in enumerate((("dice", "Dice"), ("iou", "IoU"), ("hd95_mm", "HD95 (mm)"), ("assd_mm", "ASSD (mm)"))):
        ax = fig.add_subplot(1, 4, i + 1)
        values = np.array([r.row[key] for r in ok if is_finite_number(r.row[key])])
        if values.size:
            ax.boxplot(values, widths=0.5, showfliers=False)
            jitter = np.linspace(-0.12, 0.12, values.size) if values.size > 1 else np.zeros(1)
            ax.scatter(1 + jitter, values, s=14, color="#1565c0", zorder=3)
        ax.set_xticks([])
        ax.set_title(label, fontsize=10)
        ax.grid(alpha=0.3, axis="y")
    return fig


def slice_figure(result: CaseResult):
    preview: SlicePreview = result.preview
    fig = _figure(3.6, 3.6)
    ax = fig.add_subplot()
    h, w = preview.density.shape
    dy, dx = preview.spacing_yx
    extent = (0, w * dx, h * dy, 0)
    lo, hi = np.percentile(preview.density, [1, 99.5])
    ax.imshow(preview.density, cmap="gray", vmin=lo, vmax=hi if hi > lo else lo + 1, extent=extent,
              interpolation="nearest")
    for mask, colour in ((preview.reference, REFERENCE_COLOUR), (preview.predicted, PREDICTED_COLOUR)):
        if mask.any():
            ys = (np.arange(h) + 0.5) * dy
            xs = (np.arange(w) + 0.5) * dx
            ax.contour(xs, ys, mask.astype(float), levels=[0.5], colors=[colour], linewidths=1.2)
    row = result.row
    ax.set_title(f"{row['case']}  slice {preview.slice_index}\nDice {row['dice']:.3f} (slice {row['worst_slice_dice']:.3f})",
                 fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])
    ax.plot([], [], color=REFERENCE_COLOUR, label="reference")
    ax.plot([], [], color=PREDICTED_COLOUR, label="predicted")
    ax.legend(loc="lower right", fontsize=7, framealpha=0.8)
    return fig


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    return buffer.getvalue()


def build_figures(results, summary) -> dict[str, object]:
    figures = {
        "scatter": scatter_figure(results, summary),
        "bland_altman": bland_altman_figure(results, summary),
        "distribution": distribution_figure(results),
    }
    for r in worst_cases(results):
        if r.preview is not None:
            figures[f"case:{r.row['case']}"] = slice_figure(r)
    return figures


# -- text ---------------------------------------------------------------------------------------
def _num(value, digits=3) -> str:
    if not is_finite_number(value):
        return "–"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.{digits}f}"


def _p(value) -> str:
    if not is_finite_number(value):
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def table1_rows(summary) -> list[list[str]]:
    rows = []
    for key, label in METRIC_LABELS.items():
        d = summary["metrics"][key]
        if not d["n"]:
            continue
        digits = 4 if key in ("dice", "iou", "accuracy", "auc", "sensitivity", "precision") else 2
        sd = f" ({_num(d['sd'], digits)})" if d["sd"] is not None else ""
        rows.append([label, f"{_num(d['mean'], digits)}{sd}", _num(d["median"], digits),
                     f"{_num(d['min'], digits)} – {_num(d['max'], digits)}", str(d["n"])])
    return rows


def agreement_rows(summary) -> list[list[str]]:
    agree = summary.get("d100_agreement")
    if not agree:
        return []
    rows = [["cases", str(agree["n"])]]
    if agree.get("pearson_r") is not None:
        rows += [["Pearson r (p)", f"{_num(agree['pearson_r'], 4)} ({_p(agree['pearson_p'])})"],
                 ["Spearman ρ (p)", f"{_num(agree['spearman_rho'], 4)} ({_p(agree['spearman_p'])})"]]
    for form in ("ICC(2,1)", "ICC(3,1)"):
        entry = agree["icc"][form]
        rows.append([f"{form} [95% CI]", f"{_num(entry['value'], 4)} [{_num(entry['ci95'][0], 4)}, {_num(entry['ci95'][1], 4)}]"])
    ba = agree.get("bland_altman")
    if ba:
        rows += [
            ["bias, predicted − reference [95% CI]", f"{_num(ba['bias'], 2)} [{_num(ba['bias_ci95'][0], 2)}, {_num(ba['bias_ci95'][1], 2)}] mg HA/cm³"],
            ["SD of differences", f"{_num(ba['sd'], 2)} mg HA/cm³"],
            ["95% limits of agreement", f"{_num(ba['loa_low'], 2)} to {_num(ba['loa_high'], 2)} mg HA/cm³"],
            ["proportional bias: slope (p)", f"{_num(ba['proportional_bias_slope'], 4)} ({_p(ba['proportional_bias_p'])})"],
        ]
    pd = agree.get("paired_difference")
    if pd:
        rows.append(["paired t-test p", _p(pd["p"])])
    return rows


def _html_table(header, rows, cls="") -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f'<table class="{cls}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.5em}h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}th,td{padding:.25em .7em;border-bottom:1px solid #eee;text-align:left}
th{background:#f5f5f5}td.num{text-align:right}.failed td{color:#b71c1c}
.figs img{max-width:48%;margin:.3em}.cases img{width:31%;margin:.3em;vertical-align:top}
.note{color:#555;font-size:.9em}.scroll{overflow-x:auto}
"""


def render_html(results, summary, figures_png: dict[str, bytes], title: str) -> str:
    def img(key, alt):
        data = base64.b64encode(figures_png[key]).decode("ascii")
        return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'

    parts = [
        "<!DOCTYPE html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
        f"<p class='note'>{summary['n_cases']} cases: {summary['n_evaluated']} evaluated, {summary['n_failed']} failed. "
        f"Generated {timestamp()} by napari-vbmd. Metrics compare the "
        "predicted mask against the reference mask; surface distances are in millimetres; D100 is the mean "
        "density (mg HA/cm³) of the scan under each mask.</p>",
        "<h2>Segmentation metrics (mean (SD) over cases)</h2>",
        _html_table(["metric", "mean (SD)", "median", "range", "n"], table1_rows(summary)),
        "<h2>Agreement of D100</h2>",
    ]
    arows = agreement_rows(summary)
    parts.append(_html_table(["statistic", "value"], arows) if arows
                 else f"<p>{html.escape(summary.get('d100_agreement_error') or 'not available')}</p>")
    parts.append("<div class='figs'>" + img("scatter", "D100 scatter") + img("bland_altman", "Bland-Altman") + "</div>")
    parts.append("<h2>Distribution over cases</h2><div class='figs'>" + img("distribution", "metric distribution") + "</div>")
    parts.append("<h2>Worst cases (lowest Dice)</h2>")
    parts.append("<p class='note'>Each image is the case's slice with the lowest Dice; "
                 f"<span style='color:{REFERENCE_COLOUR}'>reference</span> and "
                 f"<span style='color:{PREDICTED_COLOUR}'>predicted</span> contours.</p>")
    worst = worst_cases(results)
    parts.append(_html_table(
        ["case", "Dice", "IoU", "HD95 (mm)", "ASSD (mm)", "D100 diff", "worst slice"],
        [[r.row["case"], _num(r.row["dice"], 4), _num(r.row["iou"], 4), _num(r.row["hd95_mm"], 2),
          _num(r.row["assd_mm"], 3), _num(r.row["d100_difference"], 2), str(r.row["worst_slice"])] for r in worst]))
    parts.append("<div class='cases'>" + "".join(
        img(f"case:{r.row['case']}", r.row["case"]) for r in worst if f"case:{r.row['case']}" in figures_png) + "</div>")
    if summary["failed"]:
        parts.append("<h2>Failed cases</h2>")
        parts.append(_html_table(["case", "error"], [[f["case"], f["error"]] for f in summary["failed"]], "failed"))
    parts.append("<h2>All cases</h2><div class='scroll'>")
    parts.append(_html_table(
        ["case", "status", "Dice", "IoU", "AUC", "HD95 (mm)", "ASSD (mm)", "vol. diff (%)", "D100 ref", "D100 pred", "note / error"],
        [[r.row["case"], r.row["status"], _num(r.row["dice"], 4), _num(r.row["iou"], 4), _num(r.row["auc"], 4),
          _num(r.row["hd95_mm"], 2), _num(r.row["assd_mm"], 3), _num(r.row["volume_difference_percent"], 2),
          _num(r.row["d100_reference"], 2), _num(r.row["d100_predicted"], 2), r.row["error"] or r.row["note"] or ""]
         for r in results]))
    parts.append("</div>")
    parts.append("</body></html>\n")
    return "".join(parts)


def _text_page(pdf, title, blocks):
    fig = _figure(8.27, 11.69)
    fig.set_layout_engine(None)
    fig.text(0.06, 0.96, title, fontsize=15, weight="bold", va="top")
    y = 0.91
    for heading, header, rows in blocks:
        fig.text(0.06, y, heading, fontsize=11, weight="bold", va="top")
        y -= 0.03
        if not rows:
            continue
        height = 0.022 * (len(rows) + 1)
        ax = fig.add_axes((0.06, y - height, 0.88, height))
        ax.axis("off")
        table = ax.table(cellText=rows, colLabels=header, loc="upper left", cellLoc="left")
        table.auto_set_font_size(False)
        table.set_fontsize(8)
        table.scale(1, 1.2)
        y -= height + 0.04
    pdf.savefig(fig)


def write_pdf(path, results, summary, figures, title: str, protect=()) -> Path:
    from matplotlib.backends.backend_pdf import PdfPages

    with atomic_path(path, protect=protect) as tmp:
        with PdfPages(tmp, metadata={"Title": title, "Creator": "napari-vbmd"}) as pdf:
            blocks = [
                (f"{summary['n_cases']} cases: {summary['n_evaluated']} evaluated, {summary['n_failed']} failed", [], []),
                ("Segmentation metrics (mean (SD) over cases)", ["metric", "mean (SD)", "median", "range", "n"],
                 table1_rows(summary)),
                ("Agreement of D100 (predicted vs reference)", ["statistic", "value"], agreement_rows(summary)),
            ]
            if summary["failed"]:
                blocks.append(("Failed cases", ["case", "error"],
                               [[f["case"], (f["error"][:90] + "…") if len(f["error"]) > 90 else f["error"]]
                                for f in summary["failed"]]))
            _text_page(pdf, title, blocks)
            for key in ("scatter", "bland_altman", "distribution"):
                pdf.savefig(figures[key])
            for key, fig in figures.items():
                if key.startswith("case:"):
                    pdf.savefig(fig)
    return Path(path)


def write_report(out_dir, results: list[CaseResult], title: str = "Segmentation evaluation", protect=(),
                 summary: dict | None = None) -> dict[str, Path]:
    """Write ``evaluation_cases.csv``, ``evaluation_slices.csv``, ``evaluation_report.html`` and
    ``evaluation_report.pdf`` into ``out_dir`` (each atomically); returns their paths."""
    from .study import cases_csv_text, slices_csv_text

    out_dir = Path(out_dir)
    summary = summary if summary is not None else summarize(results)
    paths = {
        "cases_csv": out_dir / "evaluation_cases.csv",
        "slices_csv": out_dir / "evaluation_slices.csv",
        "html": out_dir / "evaluation_report.html",
        "pdf": out_dir / "evaluation_report.pdf",
    }
    write_text_atomic(paths["cases_csv"], cases_csv_text(results), protect=protect)
    write_text_atomic(paths["slices_csv"], slices_csv_text(results), protect=protect)
    figures = build_figures(results, summary)
    pngs = {key: _png(fig) for key, fig in figures.items()}
    write_text_atomic(paths["html"], render_html(results, summary, pngs, title), protect=protect)
    write_pdf(paths["pdf"], results, summary, figures, title, protect=protect)
    return paths
