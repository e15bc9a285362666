"""calibration_report.html and the agreement section the batch run's report.html can include.

Charts are inline SVG (as report.html draws its histograms): no script at all, so the page is
self-contained and small; Plotly's bundle would add about 4 MB per page for four static charts.
All text is escaped.
"""

from __future__ import annotations

import math
from html import escape

from aigc_eval import columns as col
from aigc_eval.calibration.analysis import LEARNED, Analysis
from aigc_eval.calibration.report import _num

COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f"]
STYLE = """
.agreement table{border-collapse:collapse;font-size:13px;margin:8px 0}
.agreement td,.agreement th{border:1px solid #ccc;padding:3px 7px;text-align:right}
.agreement td.t,.agreement th.t{text-align:left}
.agreement svg{background:#fff;border:1px solid #ddd;margin:4px 12px 4px 0}
.agreement .charts{display:flex;flex-wrap:wrap}
.agreement svg text{font:11px sans-serif}
"""


def _plot(title: str, x_label: str, y_label: str, series: list[tuple[str, list[float], list[float], bool]],
          size: int = 300) -> str:
    """A unit-square plot: each series (name, xs, ys, markers) as a polyline, with the diagonal."""
    left, top, plot = 40, 24, size - 60
    def px(x: float) -> float: return left + x * plot
    def py(y: float) -> float: return top + (1 - y) * plot
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size + 140}" height="{size}" role="img" aria-label="{escape(title)}">',
             f'<text x="{left}" y="14">{escape(title)}</text>',
             f'<rect x="{left}" y="{top}" width="{plot}" height="{plot}" fill="none" stroke="#999"/>',
             f'<line x1="{px(0)}" y1="{py(0)}" x2="{px(1)}" y2="{py(1)}" stroke="#bbb" stroke-dasharray="4 3"/>']
    for tick in (0, 0.5, 1):
        parts.append(f'<text x="{px(tick)}" y="{top + plot + 14}" text-anchor="middle">{tick:g}</text>')
        parts.append(f'<text x="{left - 4}" y="{py(tick) + 4}" text-anchor="end">{tick:g}</text>')
    parts.append(f'<text x="{left + plot / 2}" y="{size - 4}" text-anchor="middle">{escape(x_label)}</text>')
    parts.append(f'<text x="10" y="{top + plot / 2}" transform="rotate(-90 10 {top + plot / 2})" text-anchor="middle">{escape(y_label)}</text>')
    for k, (name, xs, ys, markers) in enumerate(series):
        colour = COLOURS[k % len(COLOURS)]
        points = " ".join(f"{px(x):.1f},{py(y):.1f}" for x, y in zip(xs, ys))
        parts.append(f'<polyline points="{points}" fill="none" stroke="{colour}" stroke-width="1.6"/>')
        if markers:
            parts += [f'<circle cx="{px(x):.1f}" cy="{py(y):.1f}" r="3" fill="{colour}"/>' for x, y in zip(xs, ys)]
        parts.append(f'<text x="{left + plot + 8}" y="{top + 12 + 14 * k}" fill="{colour}">{escape(name)}</text>')
    parts.append("</svg>")
    return "".join(parts)


def agreement_section_html(analysis: Analysis, heading: str = "Agreement with people") -> str:
    """An HTML <section> (with its own style) of the agreement figures: the table, ROC curves of each
    term, the default total and p_accept, the reliability diagram, the confusion at the threshold and
    the images where score and people disagree most. For report.html when labels are given."""
    out = [f'<section class="agreement"><style>{STYLE}</style><h2>{escape(heading)}</h2>']
    lab = analysis.labelers
    ceiling = (f"{escape(str(lab['measure']))} = {_num(lab['value'])} over {lab['images']} images"
               if lab.get("images") else "no image labelled by more than one labeler")
    out.append(f"<p>People's ceiling (agreement between labelers): {ceiling}.</p>")
    out.append('<table><tr><th class="t">score</th><th class="t">category</th><th>n</th><th>accept</th><th>reject</th>'
               "<th>ROC AUC</th><th>95% CI</th><th>AP (reject)</th><th>Spearman ρ</th></tr>")
    for a in analysis.agreements:
        out.append(f'<tr><td class="t">{escape(a.score)}</td><td class="t">{escape(a.category or "(all)")}</td><td>{a.n}</td>'
                   f"<td>{a.accept}</td><td>{a.reject}</td><td>{_num(a.auc)}</td><td>{_num(a.auc_low)}–{_num(a.auc_high)}</td>"
                   f"<td>{_num(a.average_precision)}</td><td>{_num(a.spearman, 2)}</td></tr>")
    out.append("</table>")
    series = [(name, list(fpr), list(tpr), False) for name, (fpr, tpr) in analysis.curves.items()]
    charts = [_plot("ROC (accept as positive)", "false positive rate", "true positive rate", series)]
    fit = analysis.fit
    if fit is not None:
        bins = fit.reliability
        charts.append(_plot(f"Reliability of {LEARNED} (out of fold)", "mean p_accept", "share accepted",
                            [(LEARNED, [b.mean_p for b in bins], [b.accept_share for b in bins], True)]))
    out.append(f'<div class="charts">{"".join(charts)}</div>')
    if fit is None:
        out.append(f"<p>{escape(analysis.no_fit_reason)}</p></section>")
        return "".join(out)
    c = fit.confusion
    out.append(f"<p>Brier {fit.brier:.4f}, ECE {fit.ece:.4f}. At the threshold p_accept &lt; {fit.threshold:.3f} "
               f"(out of fold): precision {_num(fit.precision[0])} [{_num(fit.precision[1])}, {_num(fit.precision[2])}], "
               f"recall {_num(fit.recall[0])} [{_num(fit.recall[1])}, {_num(fit.recall[2])}].</p>")
    out.append('<table><tr><th></th><th>people reject</th><th>people accept</th></tr>'
               f'<tr><th class="t">flagged (regenerate)</th><td>{c["flagged_rejected"]}</td><td>{c["flagged_accepted"]}</td></tr>'
               f'<tr><th class="t">kept</th><td>{c["kept_rejected"]}</td><td>{c["kept_accepted"]}</td></tr></table>')
    data = analysis.data
    for direction, positions in analysis.disagreements.items():
        out.append(f"<h3>{escape(direction)}</h3><table><tr><th class='t'>id</th><th>p_accept</th><th>total</th>"
                   "<th class='t'>category</th><th class='t'>prompt</th><th class='t'>image</th></tr>")
        for i in positions:
            row = data.rows[i]
            url = row.get(col.IMAGE_URL, "")
            link = f'<a href="{escape(url)}">{escape(url[-60:])}</a>' if url.lower().startswith(("http://", "https://")) else escape(url)
            total = data.default_total[i]
            out.append(f'<tr><td class="t">{escape(data.ids[i])}</td><td>{_num(float(fit.cv.p_oof[i]))}</td>'
                       f"<td>{'-' if math.isnan(total) else f'{total:.3f}'}</td><td class='t'>{escape(row.get(col.CATEGORY, ''))}</td>"
                       f"<td class='t'>{escape(row.get(col.PROMPT, '')[:80])}</td><td class='t'>{link}</td></tr>")
        out.append("</table>")
    out.append("</section>")
    return "".join(out)


def report_page(analysis: Analysis, summary_text: str) -> str:
    """calibration_report.html: the agreement section and the stage's text report, one page."""
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>Calibration report</title></head>"
            "<body style='font-family:sans-serif;margin:16px'><h1>Calibration report</h1>"
            f"{agreement_section_html(analysis)}<h2>Text report</h2><pre>{escape(summary_text)}</pre></body></html>")
