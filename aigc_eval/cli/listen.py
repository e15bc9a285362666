"""`message_listener.py` and `aigc-eval listen`: the parser, and a call into collection.listener."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable, Sequence, TypeVar

from aigc_eval import exit_codes
from aigc_eval import columns as col
from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging
from aigc_eval.collection import listener
from aigc_eval.collection.listener import (
    EXIT_LOCKED,
    EXIT_OUTPUT_BROKEN,
    ListenerOptions,
    collect_from_nsq,
    exit_code_for,
)
from aigc_eval.collection.messages import FieldMapping, load_mapping, parse_columns
from aigc_eval.io.append_log import OutputBroken, OutputLocked

T = TypeVar("T")

EXIT_CODES_HELP = exit_codes.help_line("listen")


def add_nsq_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, channel: str,
                      max_in_flight: int | None, who: str, max_in_flight_help: str = "") -> None:
    """The NSQ flags message_listener.py and evaluate_stream.py share: where to subscribe, the body
    mapping, flow control, retries, and when to stop (`who` share a channel's messages).
    With `max_in_flight` None, args has no max_in_flight unless given: the caller derives the default."""
    parser.add_argument("--topic", default=col.DEFAULT_NSQ_TOPIC, help="NSQ topic the generation service publishes to")
    parser.add_argument("--channel", default=channel, help=f"NSQ channel ({who} sharing one split the messages)")
    parser.add_argument(*flags("nsqd-tcp-address"), dest="nsqd_tcp_addresses", action="append", default=None,
                        help=f"nsqd TCP address, repeatable (default {col.DEFAULT_NSQD_TCP_ADDRESS} unless --lookupd-http-address)")
    parser.add_argument(*flags("lookupd-http-address"), dest="lookupd_http_addresses", action="append", default=[],
                        help="nsqlookupd HTTP address to discover nsqd from, repeatable")
    parser.add_argument("--mapping", type=Path, default=None, help="JSON object: mapping key -> body field path")
    parser.add_argument("--map", dest="map_overrides", action="append", default=[], metavar="KEY=PATH",
                        help=f"one mapping change, repeatable; keys: {', '.join(FieldMapping.keys())}")
    parser.add_argument(*flags("max-in-flight"), dest="max_in_flight", type=int,
                        default=argparse.SUPPRESS if max_in_flight is None else max_in_flight,
                        help=max_in_flight_help or "messages delivered but not yet FINished")
    parser.add_argument(*flags("max-tries"), dest="max_tries", type=int, default=10,
                        help="deliveries before a message goes to the dead-letter file (0: never)")
    parser.add_argument(*flags("requeue-delay"), dest="requeue_delay", type=int, default=90,
                        help="seconds times the attempt number before a message whose write failed comes back")
    parser.add_argument(*flags("reconnect-delay"), dest="reconnect_delay", type=float, default=15.0,
                        help="seconds before reconnecting to a lost --nsqd-tcp-address (with lookupd, the next lookup reconnects)")
    parser.add_argument(*flags("max-messages"), dest="max_messages", type=int, default=None, help="stop after this many messages")
    parser.add_argument(*flags("idle-timeout"), dest="idle_timeout", type=float, default=None,
                        help="stop after this many seconds without a message")
    parser.add_argument(*flags("progress-interval"), dest="progress_interval", type=float, default=60.0,
                        help="seconds between progress lines")


def run_nsq_loop(run: Callable[[], T], exit_code: Callable[[T], int]) -> int:
    """Run a listener's or a stream worker's loop and turn its end into an exit code: another
    process holding the output's lock (4) and a write that could not be undone (5) are one line."""
    try:
        stats = run()
    except OutputLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except OutputBroken as exc:
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return EXIT_OUTPUT_BROKEN
    return exit_code(stats)


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(listener.__doc__, exit_codes=EXIT_CODES_HELP)
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_LISTENER_OUTPUT), help="CSV the rows are appended to")
    parser.add_argument(*flags("dead-letter"), dest="dead_letter", type=Path, default=None,
                        help="JSON lines for messages that cannot become rows (default: <output stem>.dead_letter.jsonl)")
    add_nsq_arguments(parser, channel=col.DEFAULT_NSQ_CHANNEL, max_in_flight=100, who="listeners")
    parser.add_argument("--column", dest="columns", action="append", default=[], metavar="NAME=PATH",
                        help="an extra output column from a body path, repeatable (before nsq_message_id); "
                             "a list is joined with '; ', an object written as JSON")
    parser.add_argument("-v", "--verbose", action="store_true", help="also pynsq's own log lines (connections, heartbeats)")
    parser.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors on stderr")
    args = parser.parse_args(argv)
    setup_logging(args.quiet)
    logging.getLogger("nsq").setLevel(logging.INFO if args.verbose else logging.WARNING)

    def body() -> int:
        options = ListenerOptions(
            output=args.output, dead_letter=args.dead_letter, topic=args.topic, channel=args.channel,
            nsqd_tcp_addresses=tuple(args.nsqd_tcp_addresses or ([] if args.lookupd_http_addresses else [col.DEFAULT_NSQD_TCP_ADDRESS])),
            lookupd_http_addresses=tuple(args.lookupd_http_addresses), mapping=load_mapping(args.mapping, args.map_overrides),
            max_in_flight=args.max_in_flight, max_tries=args.max_tries, requeue_delay=args.requeue_delay,
            reconnect_delay=args.reconnect_delay, max_messages=args.max_messages, idle_timeout=args.idle_timeout,
            progress_interval=args.progress_interval, extra=parse_columns(args.columns),
        )
        return run_nsq_loop(lambda: collect_from_nsq(options), lambda stats: exit_code_for(stats, options))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
