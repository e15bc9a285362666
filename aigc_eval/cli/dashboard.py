"""aigc-eval dashboard: a local web page of the results store's trends, comparisons and alarms.

  aigc-eval dashboard --store postgresql://user@db/aigc --port 8765

Serves on 127.0.0.1 only (it has no login; put a reverse proxy with one in front to share it).
"""

from __future__ import annotations

import argparse
from typing import Sequence

from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging

EXIT_CODES = "exit codes: 0 stopped; 2 bad arguments or a store that cannot be opened"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES)
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    parser.add_argument("--store", default=None, help="SQLite path or postgresql:// URL (default: $AIGC_EVAL_STORE, else history.sqlite beside the score cache)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (loopback by default)")
    parser.add_argument("--port", type=int, default=8765, help="port to listen on")
    parser.add_argument(*flags("cmmd-threshold"), dest="cmmd", type=float, default=0.5, help="the alarms' CMMD threshold")
    parser.add_argument("--drop", type=float, default=0.02, help="the alarms' mean-total drop threshold")
    return parser


def run_dashboard(args: argparse.Namespace) -> int:
    """Open (and migrate) the store and serve the dashboard until interrupted."""
    import uvicorn
    from sqlalchemy.exc import SQLAlchemyError

    from aigc_eval.dashboard.app import create_app
    from aigc_eval.io.csv_io import InputError
    from aigc_eval.store.db import make_engine, upgrade
    from aigc_eval.store.stats import Thresholds

    try:
        engine = make_engine(args.store)
        upgrade(engine)
    except SQLAlchemyError as exc:
        raise InputError(f"the results store cannot be opened: {str(exc).splitlines()[0]}; check --store") from None
    app = create_app(engine, Thresholds(drop=args.drop, cmmd=args.cmmd))
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    return run_cli(lambda: run_dashboard(args))
