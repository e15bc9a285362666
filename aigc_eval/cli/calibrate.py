"""`calibrate.py` and `aigc-eval calibrate`: learn what people accept from labels, and report how
well every score agrees with them.

Reads result_total.csv (--scores) and labels.csv (--labels; its format: aigc_eval/labelling/
format.py) and/or merchants' retries from the listener's output.csv (--retries); writes
calibration.json (weights, calibrator, threshold; for main.py/serve.py/evaluate_stream.py
--calibration), calibration_report.csv and calibration_report.html; prints the agreement
report to stderr.

    python calibrate.py --scores result_total.csv --labels labels.csv --output calibration.json
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Sequence

from aigc_eval.calibration import fit as ft
from aigc_eval.calibration.report import DEFAULT_CALIBRATION, DEFAULT_REPORT_CSV, DEFAULT_REPORT_HTML
from aigc_eval.calibration.stage import CalibrateOptions, run_calibration
from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging
from aigc_eval import columns as col

EXIT_CODES_HELP = ("exit codes: 0 calibration and reports written; 1 reports written, too few labels for a "
                   "calibration (no calibration.json); 2 bad arguments or input (nothing written)")


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES_HELP)
    parser.add_argument("--scores", type=Path, default=Path(col.DEFAULT_TOTAL_OUTPUT), help="main.py's result_total.csv")
    parser.add_argument("--labels", type=Path, default=None, help="labels CSV (id, label[, rating, reason, labeler, source, labelled_at])")
    parser.add_argument("--retries", type=Path, default=None,
                        help="listener output.csv with session_id: merchants' regenerate turns become reject labels")
    parser.add_argument(*flags("retry-window"), dest="retry_window", type=float, default=None,
                        help="with --retries: seconds without a retry after which a request's images count as accepted (off)")
    parser.add_argument("--product", type=Path, default=None,
                        help="result_product.csv: its masked_ssim and delta_e_mean join the fit as terms")
    parser.add_argument("--output", type=Path, default=Path(DEFAULT_CALIBRATION), help="calibration file to write")
    parser.add_argument(*flags("report-csv"), dest="report_csv", type=Path, default=None,
                        help=f"agreement table (default: {DEFAULT_REPORT_CSV} beside --output)")
    parser.add_argument(*flags("report-html"), dest="report_html", type=Path, default=None,
                        help=f"self-contained report page (default: {DEFAULT_REPORT_HTML} beside --output)")
    target = parser.add_mutually_exclusive_group()
    target.add_argument(*flags("target-precision"), dest="target_precision", type=float, default=None,
                        help="threshold: the share of flagged images people also reject (default 0.8)")
    target.add_argument(*flags("target-regenerate-rate"), dest="target_regenerate_rate", type=float, default=None,
                        help="threshold: the share of images flagged for regeneration")
    parser.add_argument("--calibrator", choices=ft.CALIBRATORS, default="platt", help="maps the linear score to p_accept")
    parser.add_argument(*flags("allow-negative"), dest="allow_negative", action="store_true",
                        help="let weights go negative (they then no longer map onto --weight)")
    parser.add_argument("--embeddings", type=Path, default=None, metavar="CACHE_DIR",
                        help="also fit a linear probe on the score cache's CLIP embeddings (the image cache folder)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr (the report still prints)")
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    folder = args.output.parent
    options = CalibrateOptions(
        scores=args.scores, labels=args.labels, output=args.output,
        report_csv=args.report_csv or folder / DEFAULT_REPORT_CSV, report_html=args.report_html or folder / DEFAULT_REPORT_HTML,
        retries=args.retries, retry_window=args.retry_window, product=args.product,
        target_precision=args.target_precision, target_regenerate_rate=args.target_regenerate_rate,
        calibrator=args.calibrator, allow_negative=args.allow_negative, embeddings=args.embeddings,
    )
    return run_cli(lambda: run_calibration(options))


if __name__ == "__main__":
    raise SystemExit(main())
