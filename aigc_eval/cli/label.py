"""Label a scored run in the browser: one image at a time, keyboard first, every verdict appended
to labels.csv and fsynced before the page moves on; or move the run to and from Label Studio.

    python label.py --scores result_total.csv --labels labels.csv --labeler qa1
    python label.py --scores result_total.csv --calibration calibration.json   # uncertain first
    python label.py --scores result_total.csv --export-label-studio tasks.json
    python label.py --import-label-studio export.json --labels labels.csv

Keys: a accept, r reject, 1-9 0 - = pick a reason, s skip, u undo, arrows move, v scores, ? help.
The page binds to 127.0.0.1; --host 0.0.0.0 needs --token. See docs/labelling.md.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import os
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.cli.support import EXIT_OK, EXIT_ROW_ERRORS, add_fetch_arguments, fetch_config_from, flags, new_parser, run_cli, setup_logging
from aigc_eval.io.csv_io import InputError, write_rows, write_text_atomic
from aigc_eval.labelling.format import CALIBRATION_THRESHOLD, DEFAULT_LABELS, DEFAULT_THRESHOLD, P_ACCEPT
from aigc_eval.labelling.order import DEFAULT_SEED, ORDERS, STRATIFIED, UNCERTAINTY

log = logging.getLogger("aigc_eval")
TOKEN_ENV = "AIGC_EVAL_TOKEN"
DEFAULT_PORT = 8765
EXIT_CODES = "exit codes: 0 done (the server stopped by Ctrl-C/SIGTERM); 1 some imported annotations were refused (see the errors file); 2 bad arguments or input"
CALIBRATE = "python calibrate.py --scores {scores} --labels {labels} --output calibration.json"


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES)
    parser.add_argument("--scores", type=Path, default=None, help=f"the scored run (main.py's {col.DEFAULT_TOTAL_OUTPUT})")
    parser.add_argument("--labels", type=Path, default=Path(DEFAULT_LABELS), help="the labels CSV, appended to")
    parser.add_argument("--labeler", default=None, help="your name in labels.csv (default: the page asks)")
    parser.add_argument("--order", choices=ORDERS, default=None,
                        help="stratified: categories x score bins in turn; uncertainty: p_accept nearest the threshold "
                             "first; input: the file's order (default: uncertainty with --calibration, else stratified)")
    parser.add_argument("--calibration", type=Path, default=None,
                        help="calibrate.py's calibration.json: its top-level \"threshold\" and p_accept (the scores' p_accept column "
                             "where there is one, else computed by the calibration's own scorer) drive uncertainty order")
    parser.add_argument("--threshold", type=float, default=None,
                        help=f"the p_accept threshold for uncertainty order (default: the calibration's, else {DEFAULT_THRESHOLD})")
    parser.add_argument("--overlap", type=float, default=0.0, help="share of the images every labeler sees (agreement needs some, e.g. 0.1)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the stratified order and of the overlap sample")
    parser.add_argument(*flags("category-col"), dest="category_col", default=col.CATEGORY, help="column with the category")
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on; anything but loopback needs --token")
    server.add_argument("--port", type=int, default=DEFAULT_PORT, help="port to listen on")
    server.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None, help=f"bearer token for the page's API (or ${TOKEN_ENV})")
    server.add_argument(*flags("allow-private-urls"), dest="allow_private_urls", action="store_true",
                        help="fetch image URLs on loopback/private addresses too (refused by default, as the service does)")
    studio = parser.add_argument_group("Label Studio")
    studio.add_argument(*flags("export-label-studio"), dest="export_label_studio", type=Path, default=None,
                        help="write the run as Label Studio tasks (JSON) and the labelling config beside it (.xml), then exit")
    studio.add_argument(*flags("import-label-studio"), dest="import_label_studio", type=Path, default=None,
                        help="append a Label Studio export (JSON, JSON_MIN or CSV) to --labels, then exit")
    add_fetch_arguments(parser)
    parser.set_defaults(timeout=10.0, retries=1)
    return parser


@dataclass(frozen=True)
class ServeOptions:
    scores: Path
    labels: Path
    labeler: str | None
    order: str
    threshold: float
    overlap: float
    seed: int
    category_col: str
    host: str
    port: int
    token: str | None
    allow_private_urls: bool
    calibration: Path | None = None


def read_threshold(calibration: Path | None, given: float | None) -> float:
    """--threshold, else calibration.json's top-level threshold, else DEFAULT_THRESHOLD."""
    if given is not None:
        return given
    if calibration is None:
        return DEFAULT_THRESHOLD
    try:
        data = json.loads(calibration.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise InputError(f"{calibration}: cannot read the calibration ({exc}); pass calibrate.py's calibration.json") from None
    value = data.get(CALIBRATION_THRESHOLD) if isinstance(data, dict) else None
    if not isinstance(value, (int, float)):
        log.info("%s has no top-level %r; uncertainty order uses %s (set --threshold)", calibration,
                 CALIBRATION_THRESHOLD, DEFAULT_THRESHOLD)
        return DEFAULT_THRESHOLD
    return float(value)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


def _check_port(host: str, port: int) -> None:
    """ValueError naming the address when it cannot be listened on (taken, or not this machine's)."""
    family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
    with socket.socket(family) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host.strip("[]"), port))
        except OSError as exc:
            raise ValueError(f"cannot listen on {host}:{port} ({exc.strerror}); choose another --port or --host") from None


def serve(options: ServeOptions, fetch_config) -> int:
    """Run the review page until Ctrl-C/SIGTERM."""
    import uvicorn

    from aigc_eval.labelling.app import Settings, create_app
    from aigc_eval.labelling.images import ImageSource
    from aigc_eval.labelling.session import Review, load_items, order_items, p_accept_from_calibration
    from aigc_eval.labelling.store import LabelStore, check_labeler

    if not _is_loopback(options.host) and not options.token:
        raise ValueError(f"--host {options.host} opens the page to the network; give --token too (or ${TOKEN_ENV})")
    if not 0.0 <= options.overlap <= 1.0:
        raise ValueError(f"--overlap must be between 0 and 1, got {options.overlap}")
    labeler = check_labeler(options.labeler) if options.labeler else None
    _check_port(options.host, options.port)
    items = load_items(options.scores, options.category_col)
    computed = None
    if options.order == UNCERTAINTY and options.calibration and not any(P_ACCEPT in i.scores for i in items):
        computed = p_accept_from_calibration(options.scores, options.calibration, options.category_col)
        log.info("p_accept computed from %s for %d rows (the scores CSV has no %s column)", options.calibration,
                 len(items), P_ACCEPT)
    order = order_items(items, options.order, options.threshold, options.seed, computed)
    store = LabelStore(options.labels)
    try:
        review = Review(items, order, store, options.overlap, options.seed)
        loopback = _is_loopback(options.host)
        hosts = ["127.0.0.1", "localhost", "[::1]", "::1"] + ([] if loopback else ["*"])
        settings = Settings(labeler=labeler, token=options.token, allowed_hosts=hosts,
                            calibrate_command=CALIBRATE.format(scores=options.scores, labels=options.labels))
        images = ImageSource(options.scores.resolve().parent, fetch_config, options.allow_private_urls)
        app = create_app(review, images, settings)
        shown = "127.0.0.1" if options.host in ("0.0.0.0", "::") else options.host
        address = f"http://{shown}:{options.port}/" + (f"?token={options.token}" if options.token else "")
        print(f"labelling {len(items)} images ({options.order} order) into {options.labels}: open {address}", flush=True)
        uvicorn.run(app, host=options.host, port=options.port, log_level="warning")
    finally:
        store.close()
    return EXIT_OK


def export_label_studio(scores: Path, tasks_path: Path, category_col: str) -> int:
    """Write tasks.json and the matching labelling config (tasks.xml)."""
    from aigc_eval.labelling.label_studio import export_tasks, label_config
    from aigc_eval.labelling.session import load_items

    items = load_items(scores, category_col)
    tasks = export_tasks(items, scores.resolve().parent)
    write_text_atomic(tasks_path, json.dumps(tasks, ensure_ascii=False, indent=1))
    config_path = tasks_path.with_suffix(".xml")
    write_text_atomic(config_path, label_config())
    print(f"wrote {len(tasks)} Label Studio tasks to {tasks_path} and the labelling config to {config_path}", file=sys.stderr)
    return EXIT_OK


def import_label_studio(export: Path, labels: Path) -> int:
    """Append a Label Studio export to labels.csv; refused annotations go to <labels>.import_errors.csv."""
    from aigc_eval.labelling.label_studio import read_export
    from aigc_eval.labelling.store import LabelStore

    rows, errors = read_export(export)
    store = LabelStore(labels)
    try:
        added = store.append_rows(rows)
    finally:
        store.close()
    errors_path = labels.with_name(labels.stem + ".import_errors.csv")
    if errors:
        write_rows(errors_path, ["task", "annotation", "error"], errors)
    print(f"{export}: {len(rows)} annotations read, {added} new rows appended to {labels}"
          + (f", {len(errors)} refused (see {errors_path})" if errors else ""), file=sys.stderr)
    return EXIT_ROW_ERRORS if errors else EXIT_OK


def run(args: argparse.Namespace) -> int:
    """Dispatch on the mode the flags pick."""
    if args.import_label_studio:
        return import_label_studio(args.import_label_studio, args.labels)
    if args.scores is None:
        raise ValueError("--scores is required (the scored run, e.g. result_total.csv)")
    if args.export_label_studio:
        return export_label_studio(args.scores, args.export_label_studio, args.category_col)
    order = args.order or (UNCERTAINTY if args.calibration else STRATIFIED)
    options = ServeOptions(args.scores, args.labels, args.labeler, order, read_threshold(args.calibration, args.threshold),
                           args.overlap, args.seed, args.category_col, args.host, args.port, args.token,
                           args.allow_private_urls, args.calibration)
    return serve(options, fetch_config_from(args))


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    return run_cli(lambda: run(args))
