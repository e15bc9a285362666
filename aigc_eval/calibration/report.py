"""The agreement report as text (stderr) and as calibration_report.csv, and the JSON document of a
fit (calibration.json's content)."""

from __future__ import annotations

import math
from dataclasses import asdict, fields

from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.analysis import Analysis, ScoreAgreement
from aigc_eval.calibration import model as md
from aigc_eval.calibration.terms import definition_versions

DEFAULT_REPORT_CSV = "calibration_report.csv"
DEFAULT_REPORT_HTML = "calibration_report.html"
DEFAULT_CALIBRATION = "calibration.json"
REPORT_COLUMNS = [f.name for f in fields(ScoreAgreement)]


def _num(value: float, digits: int = 3) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def report_rows(analysis: Analysis) -> list[dict[str, object]]:
    """calibration_report.csv: one row per (score, category); category "" is all labels."""
    return [{k: (round(v, 6) if isinstance(v, float) and not math.isnan(v) else ("" if isinstance(v, float) else v))
             for k, v in asdict(a).items()} for a in analysis.agreements]


def label_lines(analysis: Analysis, labels) -> list[str]:
    data = analysis.data
    accepts = int(data.y.sum())
    lines = [f"labels: {labels.rows_read} rows in {labels.path}; {len(labels.verdicts) + len(labels.ties)} images with a verdict; "
             f"{len(data.y)} scored and labelled ({accepts} accept, {len(data.y) - accepts} reject)"]
    if data.unmatched:
        lines.append(f"  {len(data.unmatched)} labelled id(s) not in the scores, left out (e.g. {', '.join(data.unmatched[:3])})")
    if data.unscored:
        lines.append(f"  {len(data.unscored)} labelled image(s) without terms (status not ok), left out (e.g. {', '.join(data.unscored[:3])})")
    if labels.duplicates:
        lines.append(f"  {labels.duplicates} row(s) superseded by a later row of the same (id, labeler), last one kept "
                     f"(e.g. {', '.join(labels.duplicate_examples[:3])})")
    if labels.withdrawn:
        lines.append(f"  {labels.withdrawn} (id, labeler) pair(s) ending in undone or skip: no verdict")
    if labels.conflicts:
        lines.append(f"  {labels.conflicts} image(s) where labelers disagree: decided by majority")
    if labels.ties:
        lines.append(f"  {len(labels.ties)} image(s) tied between accept and reject: no verdict (e.g. {', '.join(labels.ties[:3])})")
    sources = ", ".join(f"{name} {count}" for name, count in sorted(labels.sources.items()))
    if sources:
        lines.append(f"  verdict rows by source: {sources}")
    return lines


def text_report(analysis: Analysis, labels) -> str:
    """The agreement report for stderr."""
    lines = label_lines(analysis, labels)
    lab = analysis.labelers
    if lab.get("images"):
        lines.append(f"people's ceiling: {lab['measure']} = {_num(lab['value'])} over {lab['images']} images "
                     f"labelled by several of {lab['labelers']} labelers (no score agrees with people better than they agree with each other)")
    else:
        lines.append("people's ceiling: no image labelled by more than one labeler")
    lines.append(f"{'score':<16} {'category':<12} {'n':>6} {'acc':>6} {'rej':>6}  {'ROC AUC [95% CI]':<22} {'AP(rej)':>7} {'rho':>6}")
    for a in analysis.agreements:
        ci = f"{_num(a.auc)} [{_num(a.auc_low)}, {_num(a.auc_high)}]"
        lines.append(f"{a.score:<16} {a.category or '(all)':<12} {a.n:>6} {a.accept:>6} {a.reject:>6}  {ci:<22} "
                     f"{_num(a.average_precision):>7} {_num(a.spearman, 2):>6}")
    fit = analysis.fit
    if fit is None:
        lines.append(analysis.no_fit_reason)
        return "\n".join(lines)
    g = fit.model.global_model
    names = analysis.data.term_names
    weights = ", ".join(f"{n} {w:.3f}" + (f" [{lo:.3f}, {hi:.3f}]" if not math.isnan(lo) else " (fixed at 0)")
                        for n, w, (lo, hi) in zip(names, g.weights, g.intervals))
    lines.append(f"fit: intercept {g.intercept:.3f}; weights {weights}; C {fit.cv.C:g} (grouped {ft.FOLDS}-fold CV)")
    for name, n in fit.model.category_labels.items():
        cw = fit.model.categories[name].weights
        lines.append(f"  category {name} ({n} labels): " + ", ".join(f"{t} {w:.3f}" for t, w in zip(names, cw)))
    p, r = fit.precision, fit.recall
    lines.append(f"p_accept ({fit.calibrator_kind}, out of fold): Brier {fit.brier:.4f}, ECE {fit.ece:.4f}; "
                 f"threshold {fit.threshold:.3f}: precision {_num(p[0])} [{_num(p[1])}, {_num(p[2])}], "
                 f"recall {_num(r[0])} [{_num(r[1])}, {_num(r[2])}], flags {fit.flagged_share:.1%}")
    if fit.embedding:
        e = fit.embedding
        if "auc" not in e:
            lines.append(f"embedding probe: not fitted ({e.get('reason', '')}; {e['rows']} rows with embeddings)")
            return "\n".join(lines)
        lines.append(f"embedding probe: CV AUC {_num(e['auc'])} vs terms {_num(e['terms_auc'])}: "
                     f"{'kept' if e['kept'] else 'not kept'} (needs +{e['margin']})")
    return "\n".join(lines)


def calibration_document(analysis: Analysis, labels_digest: str) -> dict[str, object]:
    """calibration.json's content for a fit (see model.py for the keys)."""
    fit, data = analysis.fit, analysis.data
    if fit is None:
        raise ValueError("no fit to write: " + analysis.no_fit_reason)
    g = fit.model.global_model
    names = data.term_names

    def linear(model: ft.LinearModel) -> dict[str, object]:
        return {md.K_INTERCEPT: model.intercept, md.K_WEIGHTS: dict(zip(names, map(float, model.weights)))}

    overall = next(a for a in analysis.agreements if a.score == "p_accept" and not a.category)
    return {
        md.K_FORMAT: md.FORMAT, md.K_FORMAT_VERSION: md.FORMAT_VERSION,
        md.K_METRICS: list(data.metric_names), md.K_DEFINITIONS: definition_versions(list(data.metric_names)),
        md.K_TERMS: list(names),
        md.K_MODEL: {**linear(g), md.K_FILLS: dict(zip(names, map(float, g.fills))),
                     md.K_INTERVALS: {n: [None if math.isnan(lo) else lo, None if math.isnan(hi) else hi]
                                      for n, (lo, hi) in zip(names, g.intervals.tolist())}},
        md.K_CATEGORIES: {name: {**linear(m), "labels": fit.model.category_labels[name]} for name, m in fit.model.categories.items()},
        md.K_CALIBRATOR: fit.calibrator,
        md.K_THRESHOLD: fit.threshold,
        "threshold_rule": fit.threshold_rule,
        md.K_LABELS: {"count": int(len(data.y)), "accept": int(data.y.sum()), "reject": int(len(data.y) - data.y.sum()),
                      "hash": labels_digest},
        md.K_CV: {"folds": ft.FOLDS, "grouped_by": "product cut-out, else request", "C": fit.cv.C,
                  "log_loss_by_C": {f"{c:g}": v for c, v in fit.cv.losses.items()},
                  "auc": overall.auc, "auc_ci": [overall.auc_low, overall.auc_high],
                  "average_precision_reject": overall.average_precision,
                  "brier": fit.brier, "ece": fit.ece, "precision_at_threshold": list(fit.precision),
                  "recall_at_threshold": list(fit.recall), "flagged_share": fit.flagged_share,
                  "embedding_probe": fit.embedding},
        md.K_TOOL_VERSION: md.tool_version(), md.K_CREATED_AT: md.utc_now(),
    }
