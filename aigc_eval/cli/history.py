"""aigc-eval history: the results store's command line.

  aigc-eval history upgrade [--store URL]             migrate the store to the latest schema
  aigc-eval history import RUN_DIR... [--store URL]   load runs scored before the store existed
  aigc-eval history import --spool FILE [--store URL] load what a run spooled while the store was down
  aigc-eval history check --window 7d --baseline 28d  exit 1 and one line per alarm (for cron)

--store takes a SQLite path or a postgresql:// URL; without it, $AIGC_EVAL_STORE or
history.sqlite beside the score cache (docs/store.md).
"""

from __future__ import annotations

import argparse
import re
import sys
from datetime import date
from pathlib import Path
from typing import Sequence

from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging
from aigc_eval.io.csv_io import InputError
from aigc_eval.io.image_fetch import default_cache_dir

EXIT_CODES = "exit codes: 0 done (check: no alarm); 1 check raised an alarm; 2 bad arguments, input or store"


def days(text: str) -> int:
    """"7d", "2w" or "7" as a number of days."""
    match = re.fullmatch(r"\s*(\d+)\s*([dw]?)\s*", text)
    if not match or int(match.group(1)) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration; write e.g. 7d or 4w")
    return int(match.group(1)) * (7 if match.group(2) == "w" else 1)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES)
    parser.add_argument("-q", "--quiet", action="store_true", help="log warnings only")
    commands = parser.add_subparsers(dest="command", required=True)
    store_help = "SQLite path or postgresql:// URL (default: $AIGC_EVAL_STORE, else history.sqlite beside the score cache)"
    up = commands.add_parser("upgrade", help="migrate the store to the latest schema")
    up.add_argument("--store", default=None, help=store_help)
    imp = commands.add_parser("import", help="load old run folders (result_total.csv) or a spool file")
    imp.add_argument("run_dirs", nargs="*", type=Path, help="run folders or result_total.csv files")
    imp.add_argument("--store", default=None, help=store_help)
    imp.add_argument("--spool", type=Path, default=None, help="a spool file to load (JSON lines a run wrote while the store was down)")
    imp.add_argument(*flags("cache-dir"), dest="cache_dir", type=Path, default=None,
                     help="the image cache whose scores.sqlite holds the runs' CLIP embeddings (default: $AIGC_EVAL_CACHE or ~/.cache/aigc-image-eval/images)")
    imp.add_argument(*flags("generator-version"), dest="generator_version", default="",
                     help="the generator version of rows without a generator_version column")
    chk = commands.add_parser("check", help="regressions and drift of the last window against its baseline")
    chk.add_argument("--store", default=None, help=store_help)
    chk.add_argument("--window", type=days, default=7, help="the recent days checked, e.g. 7d")
    chk.add_argument("--baseline", type=days, default=28, help="the days before the window it is checked against, e.g. 28d")
    chk.add_argument("--until", type=date.fromisoformat, default=None, help="the day after the window (default: tomorrow, UTC)")
    chk.add_argument("--drop", type=float, default=0.02, help="alarm when a category's mean total falls by more than this ...")
    chk.add_argument("--alpha", type=float, default=0.01, help="... with Welch's one-sided t-test p below this")
    chk.add_argument(*flags("cmmd-threshold"), dest="cmmd", type=float, default=0.5, help="alarm when a category's CMMD to the baseline exceeds this")
    chk.add_argument(*flags("min-rows"), dest="min_rows", type=int, default=30, help="categories with fewer rows a side get no mean test")
    return parser


def _engine(url: str | None):
    from aigc_eval.store.db import make_engine, upgrade

    engine = make_engine(url)
    upgrade(engine)
    return engine


def run_history(args: argparse.Namespace) -> int:
    """The chosen history command; its exit code."""
    from sqlalchemy.exc import SQLAlchemyError

    try:
        return _run(args)
    except SQLAlchemyError as exc:
        raise InputError(f"the results store failed: {str(exc).splitlines()[0]}; check --store") from None


def _run(args: argparse.Namespace) -> int:
    from aigc_eval.store.schema import resolve_url

    url = resolve_url(args.store)
    if args.command == "upgrade":
        from aigc_eval.store.db import current_revision

        print(f"{_safe(url)}: schema revision {current_revision(_engine(url))}")
        return 0
    if args.command == "import":
        if not args.run_dirs and args.spool is None:
            raise InputError("give run folders to import, or --spool FILE")
        if args.spool is not None:
            from aigc_eval.store import spool

            if not args.spool.is_file():
                raise InputError(f"{args.spool}: no such spool file")
            loaded = spool.load(_engine(url), args.spool)
            if args.spool.exists():
                raise InputError(f"{args.spool} could not be loaded; it stays for the next try")
            print(f"{args.spool}: {loaded} rows loaded")
        from aigc_eval.store.importer import import_run

        cache_dir = args.cache_dir or default_cache_dir()
        for run_dir in args.run_dirs:
            done = import_run(run_dir, url, cache_dir, args.generator_version)
            note = (f"{done.embeddings} CLIP embeddings from {cache_dir / 'scores.sqlite'}" if done.embeddings else
                    f"no CLIP embeddings (its images are not in the score cache {cache_dir}); drift checks will skip it")
            print(f"{done.run_dir}: run {done.run_id}, {done.rows} rows, {note}")
        return 0
    from aigc_eval.store.analysis import check, windows
    from aigc_eval.store.stats import Thresholds

    window, baseline = windows(args.window, args.baseline, args.until)
    alarms = check(_engine(url), window, baseline,
                   Thresholds(drop=args.drop, alpha=args.alpha, cmmd=args.cmmd, min_rows=args.min_rows))
    for alarm in alarms:
        print(alarm.line)
    print(f"history check: {len(alarms)} alarm(s), window {window.since}..{window.until}, "
          f"baseline {baseline.since}..{baseline.until}", file=sys.stderr)
    return 1 if alarms else 0


def _safe(url: str) -> str:
    from aigc_eval.store.recorder import _safe_url

    return _safe_url(url)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    return run_cli(lambda: run_history(args))
