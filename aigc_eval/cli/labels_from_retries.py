"""`aigc-eval labels-from-retries`: merchants' regenerate turns in the listener's output.csv as
labels.csv rows (reject, source merchant_retry; with --retry-window, accept after that many
seconds without a retry, source merchant_no_retry). The rules: aigc_eval/calibration/retries.py.

    aigc-eval labels-from-retries --input output.csv --output retry_labels.csv
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.calibration.retries import label_csv_rows, labels_from_retries
from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging
from aigc_eval.io.csv_io import write_rows
from aigc_eval.labelling import format as lf

EXIT_CODES_HELP = "exit codes: 0 labels written; 2 bad arguments or input (nothing written)"


def write_retry_labels(source: Path, output: Path, retry_window: float | None) -> int:
    """Read retries from `source`, write labels.csv rows to `output` atomically; returns 0."""
    if retry_window is not None and retry_window <= 0:
        raise ValueError(f"--retry-window must be a positive number of seconds, got {retry_window}")
    rows, stats = labels_from_retries(source, retry_window)
    write_rows(output, lf.LABEL_COLUMNS, label_csv_rows(rows))
    logging.getLogger("aigc_eval.retries").info("%s; wrote %s", stats.line(), output)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES_HELP)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_LISTENER_OUTPUT), help="the listener's output.csv (with session_id)")
    parser.add_argument("--output", type=Path, default=Path("retry_labels.csv"), help="labels CSV to write")
    parser.add_argument(*flags("retry-window"), dest="retry_window", type=float, default=None,
                        help="seconds without a retry after which a request's images are labelled accept (off)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    return run_cli(lambda: write_retry_labels(args.input, args.output, args.retry_window))


if __name__ == "__main__":
    raise SystemExit(main())
