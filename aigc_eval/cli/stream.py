"""Score each generated image as NSQ delivers it, into this worker's shard; publish each result.

Subscribes like message_listener.py (same topic, mapping and guarantees) on --channel
(aigc_image_eval_stream; workers sharing it split the messages), scores the images of the
messages in flight in batches through the scoring core main.py --input uses (CLIPScore of the
cleaned prompt, Inception top-1 and logits, the product check when a message has a cut-out),
appends one row per image to <output-dir>/result_stream.<worker>.csv with its logits beside it
(.logits.jsonl), fsynced before the message is FINished, and publishes one JSON result per
image on --result-topic (generate_img_score_topic). main.py --shards 'result_stream.*.csv'
turns the shards into the batch run's outputs. See docs/streaming.md.

    python evaluate_stream.py --worker-name gpu0 --device cuda:0
    python evaluate_stream.py --lookupd-http-address 10.0.0.5:4161 --result-nsqd-tcp-address 10.0.0.6:4150
    python evaluate_stream.py --idle-timeout 300 --max-messages 20000        # from cron
    python main.py --shards 'result_stream.*.csv'                            # -> result_total.csv, ...
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
from pathlib import Path
from typing import Sequence

from aigc_eval import exit_codes
from aigc_eval import columns as col
from aigc_eval.cli.listen import add_nsq_arguments, run_nsq_loop
from aigc_eval.cli.product import add_product_arguments, product_options_from
from aigc_eval.cli.support import (
    add_cleaning_arguments,
    add_decision_arguments,
    add_model_arguments,
    add_runtime_arguments,
    cleaning_options_from,
    decision_flags_from,
    flags,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from aigc_eval.collection.listener import (
    ListenerOptions,
    exit_code_for,
)
from aigc_eval.collection.messages import load_mapping

EXIT_CODES_HELP = exit_codes.help_line("stream")


IN_FLIGHT_PER_BATCH = 2  # default --max-in-flight per --batch-size image


def default_worker_name() -> str:
    """host name + pid, made safe for a file name."""
    host = "".join(c if c.isalnum() or c in "-_" else "-" for c in socket.gethostname()) or "worker"
    return f"{host}-{os.getpid()}"


def build_parser() -> argparse.ArgumentParser:

    parser = new_parser(__doc__, exit_codes=EXIT_CODES_HELP)
    parser.add_argument(*flags("output-dir"), dest="output_dir", type=Path, default=Path("."), help="folder of the shards")
    parser.add_argument(*flags("worker-name"), dest="worker_name", default=None,
                        help="this worker's name in its files (default: host name-pid; give a fixed one so a restart "
                             "reuses its shard and republishes what was not acknowledged)")
    parser.add_argument(*flags("dead-letter"), dest="dead_letter", type=Path, default=None,
                        help="JSON lines for messages that cannot become rows (default: result_stream.<worker>.dead_letter.jsonl)")
    nsq_group = parser.add_argument_group("NSQ (as message_listener.py)")
    # The default depends on --batch-size: options_from fills it in.
    add_nsq_arguments(nsq_group, channel=col.DEFAULT_STREAM_CHANNEL, max_in_flight=None, who="workers",
                      max_in_flight_help=f"messages delivered but not yet FINished (default: {IN_FLIGHT_PER_BATCH} x "
                                         "--batch-size, so the next batch fills while the models run one)")
    nsq_group.add_argument(*flags("msg-timeout"), dest="msg_timeout", type=float, default=60.0,
                           help="seconds nsqd waits for a FIN before giving a message to another worker (negotiated; "
                                "messages being scored are TOUCHed every third of it)")
    publish = parser.add_argument_group("result messages")
    publish.add_argument(*flags("result-topic"), dest="result_topic", default=col.DEFAULT_RESULT_TOPIC,
                         help="topic each image's JSON result is published to")
    publish.add_argument(*flags("result-nsqd-tcp-address"), dest="result_addresses", action="append", default=None,
                         help="nsqd TCP address to publish to, repeatable (default: the --nsqd-tcp-address ones)")
    publish.add_argument(*flags("no-publish"), dest="no_publish", action="store_true", help="publish no results")
    add_decision_arguments(publish)
    scoring = parser.add_argument_group("scoring (as main.py --input)")
    add_model_arguments(scoring)
    add_cleaning_arguments(scoring)
    add_runtime_arguments(scoring, batch_size=32)
    product = parser.add_argument_group("product checks (for messages with a cut-out)")
    product.add_argument(*flags("no-product"), dest="no_product", action="store_true", help="no product checks")
    add_product_arguments(product)
    parser.add_argument("-v", "--verbose", action="store_true", help="also pynsq's own log lines (connections, heartbeats)")
    return parser


def options_from(args: argparse.Namespace):
    """The StreamOptions the flags describe; ValueError or InputError naming a bad one."""
    from aigc_eval.stream.publish import ResultSettings
    from aigc_eval.stream.runner import ScoringSettings, StreamOptions
    from aigc_eval.stream.shards import ShardPaths, check_worker_name

    nsqd = tuple(args.nsqd_tcp_addresses or ([] if args.lookupd_http_addresses else [col.DEFAULT_NSQD_TCP_ADDRESS]))
    mapping = load_mapping(args.mapping, args.map_overrides)
    if mapping.id:  # shard rows are ids <request_id>_<index>: the worker reads generation requests
        raise ValueError("--map id=... is for collecting one-image messages (such as the result topic) with "
                         "message_listener.py; evaluate_stream.py reads generation requests: leave id unmapped")
    nsq_options = ListenerOptions(
        dead_letter=args.dead_letter, topic=args.topic, channel=args.channel, nsqd_tcp_addresses=nsqd,
        lookupd_http_addresses=tuple(args.lookupd_http_addresses), mapping=mapping,
        max_in_flight=getattr(args, "max_in_flight", IN_FLIGHT_PER_BATCH * args.batch_size),
        max_tries=args.max_tries, requeue_delay=args.requeue_delay,
        reconnect_delay=args.reconnect_delay, max_messages=args.max_messages, idle_timeout=args.idle_timeout,
        progress_interval=args.progress_interval)
    from aigc_eval.metrics.registry import parse_metric_names

    if not 0 < args.clip_ceiling <= 1:
        raise ValueError(f"--clip-ceiling must be in (0, 1], got {args.clip_ceiling}")
    metrics = tuple(parse_metric_names(args.metrics)) if args.metrics else None
    weights, thresholds = decision_flags_from(args)
    scoring = ScoringSettings(args.model, args.model_dir, args.weights, runtime_options_from(args),
                              None if args.no_product else product_options_from(args), cleaning_options_from(args),
                              metrics)
    results = ResultSettings(weights, thresholds, metrics, args.clip_ceiling)
    return StreamOptions(
        nsq=nsq_options, paths=ShardPaths(args.output_dir, check_worker_name(args.worker_name or default_worker_name())),
        scoring=scoring, results=results, result_topic=None if args.no_publish else args.result_topic,
        result_addresses=tuple(args.result_addresses or nsqd), msg_timeout=args.msg_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)
    logging.getLogger("nsq").setLevel(logging.INFO if args.verbose else logging.WARNING)

    def body() -> int:
        from aigc_eval.stream.runner import run_stream

        options = options_from(args)
        return run_nsq_loop(lambda: run_stream(options), lambda stats: exit_code_for(stats, options.checked().nsq))

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
