"""The calibration stage: read scores and labels, analyse, and write calibration_report.csv,
calibration_report.html and (with enough labels) calibration.json, each atomically; the
agreement report goes to stderr."""

from __future__ import annotations

import json
import logging
import sys
from dataclasses import dataclass
from pathlib import Path

from aigc_eval.calibration import agreement as ag
from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.analysis import analyse
from aigc_eval.calibration.dataset import build_dataset
from aigc_eval.calibration.labels import decide, parse_label_row, read_csv_strict
from aigc_eval.calibration.report import REPORT_COLUMNS, calibration_document, report_rows, text_report
from aigc_eval.calibration.report_html import report_page
from aigc_eval.calibration.retries import labels_from_retries
from aigc_eval.io.csv_io import write_rows, write_text_atomic
from aigc_eval.labelling import format as lf

log = logging.getLogger("aigc_eval.calibrate")

EXIT_WRITTEN = 0
EXIT_NO_FIT = 1  # the agreement report was written, but too few labels for a calibration


@dataclass(frozen=True)
class CalibrateOptions:
    scores: Path
    labels: Path | None
    output: Path
    report_csv: Path
    report_html: Path
    retries: Path | None = None
    retry_window: float | None = None
    product: Path | None = None
    target_precision: float | None = None
    target_regenerate_rate: float | None = None
    calibrator: str = "platt"
    allow_negative: bool = False
    embeddings: Path | None = None
    class_min: int = ft.CLASS_MIN

    def checked(self) -> "CalibrateOptions":
        if self.labels is None and self.retries is None:
            raise ValueError("no labels: give --labels labels.csv, --retries output.csv, or both")
        if self.target_precision is not None and self.target_regenerate_rate is not None:
            raise ValueError("give --target-precision or --target-regenerate-rate, not both")
        for name, value in (("--target-precision", self.target_precision), ("--target-regenerate-rate", self.target_regenerate_rate)):
            if value is not None and not 0 < value < 1:
                raise ValueError(f"{name} must be between 0 and 1 (exclusive), got {value}")
        if self.retry_window is not None and self.retry_window <= 0:
            raise ValueError(f"--retry-window must be a positive number of seconds, got {self.retry_window}")
        if self.calibrator not in ft.CALIBRATORS:
            raise ValueError(f"--calibrator {self.calibrator!r}: choose one of {', '.join(ft.CALIBRATORS)}")
        return self


def read_label_rows(options: CalibrateOptions):
    """labels.csv's rows, then the retry labels (a person's row for an image is kept beside a
    merchant's: they are different labelers)."""
    rows = []
    if options.labels is not None:
        _, raw = read_csv_strict(options.labels, lf.REQUIRED_COLUMNS)
        rows += [parse_label_row(row, number, options.labels) for number, row in enumerate(raw, start=1)]
    if options.retries is not None:
        retry_rows, stats = labels_from_retries(options.retries, options.retry_window)
        log.info("%s", stats.line())
        rows += retry_rows
    where = " + ".join(str(p) for p in (options.labels, options.retries) if p is not None)
    return decide(rows, where)


def run_calibration(options: CalibrateOptions) -> int:
    """The whole stage; returns EXIT_WRITTEN or EXIT_NO_FIT. Raises InputError/ValueError for bad input
    before anything is written."""
    options = options.checked()
    labels = read_label_rows(options)
    data = build_dataset(options.scores, labels, options.product)
    analysis = analyse(data, ag.labeler_agreement(labels.by_labeler), nonneg=not options.allow_negative,
                       calibrator=options.calibrator, target_precision=options.target_precision,
                       target_rate=options.target_regenerate_rate, class_min=options.class_min)
    if analysis.fit is not None and options.embeddings is not None:
        from aigc_eval.calibration.embeddings import embedding_probe

        analysis.fit.embedding = embedding_probe(data, options.embeddings, analysis.fit, options.scores.parent)
    text = text_report(analysis, labels)
    write_rows(options.report_csv, REPORT_COLUMNS, report_rows(analysis))
    write_text_atomic(options.report_html, report_page(analysis, text))
    if analysis.fit is not None:
        document = calibration_document(analysis, labels.digest(data.ids))
        write_text_atomic(options.output, json.dumps(document, ensure_ascii=False, indent=2) + "\n")
    print(text, file=sys.stderr)
    if analysis.fit is None:
        log.warning("%s not written: %s", options.output, analysis.no_fit_reason)
        return EXIT_NO_FIT
    log.info("wrote %s, %s and %s", options.output, options.report_csv, options.report_html)
    return EXIT_WRITTEN


def agreement_section_for(scores: Path, labels: Path, calibration=None, class_min: int = ft.CLASS_MIN) -> str:
    """The agreement section for main.py's report.html when labels are given: the figures of each
    term, the default total and a cross-validated p_accept on these labels; with a loaded
    Calibration, also its own p_accept on them (named with its digest). Raises InputError/ValueError
    for bad labels or scores, like the stage."""
    import numpy as np

    from aigc_eval.calibration.analysis import roc_points, score_agreement
    from aigc_eval.calibration.labels import read_labels
    from aigc_eval.calibration.report_html import agreement_section_html

    decided = read_labels(labels)
    data = build_dataset(scores, decided)
    analysis = analyse(data, ag.labeler_agreement(decided.by_labeler), class_min=class_min)
    if calibration is not None and len(data.y):
        p = np.array([calibration.p_accept({name: (None if np.isnan(v) else float(v)) for name, v in zip(data.term_names, row)},
                                           category or None) for row, category in zip(data.X, data.categories)])
        name = f"p_accept [{calibration.digest}]"
        found = score_agreement(name, "", data.y, p, data.ratings, data.groups)
        if found:
            analysis.agreements.append(found)
            analysis.curves[name] = roc_points(data.y, p)
    return agreement_section_html(analysis)
