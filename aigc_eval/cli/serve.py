"""Score images online over HTTP: POST /v1/score with one item or a list, the same numbers as
main.py --input gives the same images (same scoring core, cache, precision and decisions).

    python serve.py --port 8000 --reference-marginal logits.npy
    curl -s localhost:8000/v1/score -H 'Content-Type: application/json' \\
         -d '{"image_url": "https://cdn.example.com/a.jpg", "prompt": "雪地背景，运动鞋"}'

OpenAPI at /openapi.json, docs at /docs, /healthz, /readyz, /metrics. SIGTERM stops taking
requests, finishes those in flight and exits 0. See docs/service.md.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Sequence

from aigc_eval import exit_codes
from aigc_eval.cli.product import add_product_arguments, product_options_from
from aigc_eval.cli.support import (
    EXIT_NO_WEIGHTS,
    EXIT_OK,
    add_cleaning_arguments,
    add_decision_arguments,
    add_store_arguments,
    decision_flags_from,
    add_model_arguments,
    add_runtime_arguments,
    cleaning_options_from,
    flags,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)

TOKEN_ENV = "AIGC_EVAL_TOKEN"
EXIT_CODES = exit_codes.help_line("serve")


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(__doc__, exit_codes=EXIT_CODES)
    server = parser.add_argument_group("server")
    server.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: every interface)")
    server.add_argument("--port", type=int, default=8000, help="port to listen on")
    server.add_argument(*flags("max-wait-ms"), dest="max_wait_ms", type=float, default=10.0,
                        help="how long a batch waits for more items after its first")
    server.add_argument(*flags("max-queue"), dest="max_queue", type=int, default=64,
                        help="items waiting for a batch; beyond it requests get 503 with Retry-After "
                             "(the expected drain time)")
    server.add_argument(*flags("deadline-s"), dest="deadline_s", type=float, default=30.0,
                        help="seconds a request may take; then 504. A request not expected to finish within two thirds "
                             "of it, at the measured rate, gets 503 at once")
    server.add_argument(*flags("max-body-mb"), dest="max_body_mb", type=float, default=16.0,
                        help="largest request body in MiB; larger ones get 413")
    server.add_argument("--token", default=os.environ.get(TOKEN_ENV) or None,
                        help=f"require 'Authorization: Bearer TOKEN' everywhere but /healthz and /readyz "
                             f"(default: ${TOKEN_ENV}; none: open)")
    server.add_argument(*flags("allow-private-urls"), dest="allow_private_urls", action="store_true",
                        help="also fetch from loopback, private and link-local addresses (closed networks, tests)")
    server.add_argument(*flags("reference-marginal"), dest="reference_marginal", type=Path, default=None,
                        help="the Inception term's reference: an .npy of (N, 1000) logits (evaluate_is.py --save-logits) "
                             "or of 1000 probabilities; without it the IS term is left out of total_score")
    scoring = parser.add_argument_group("scoring (as main.py --input)")
    add_model_arguments(scoring)
    add_decision_arguments(scoring)
    add_store_arguments(scoring, by_default=False)
    add_cleaning_arguments(scoring)
    add_runtime_arguments(scoring, batch_size=16)
    add_product_arguments(parser.add_argument_group("product checks (items with a product_image_url)"))
    return parser


def settings_from(args: argparse.Namespace):
    """The ServiceSettings the flags describe; ValueError for values out of range."""
    from aigc_eval.service.scoring import (
        ServiceSettings,  # torch loads here, after --help
    )

    from aigc_eval.metrics.registry import parse_metric_names

    if not 0 < args.clip_ceiling <= 1:
        raise ValueError(f"--clip-ceiling must be in (0, 1], got {args.clip_ceiling}")
    weights, thresholds = decision_flags_from(args)
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be 1..65535, got {args.port}")
    return ServiceSettings(
        model_name=args.model, model_dir=args.model_dir, weights=args.weights, runtime=runtime_options_from(args),
        product=product_options_from(args), cleaning=cleaning_options_from(args),
        metrics=tuple(parse_metric_names(args.metrics)) if args.metrics else None, metric_weights=weights,
        thresholds=thresholds, clip_ceiling=args.clip_ceiling, calibration=args.calibration, store=args.store,
        generator_version=args.generator_version,
        max_wait_ms=args.max_wait_ms, max_queue=args.max_queue, deadline_s=args.deadline_s,
        max_body_bytes=int(args.max_body_mb * 1024 * 1024), token=args.token or None,
        reference_marginal=args.reference_marginal, allow_private_urls=args.allow_private_urls)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        import uvicorn

        from aigc_eval.service.app import create_app

        settings = settings_from(args)
        failed = []
        server: uvicorn.Server | None = None

        def on_fatal() -> None:  # the models cannot be loaded: stop, and say so in the exit code
            failed.append(True)
            if server is not None:
                server.should_exit = True

        app = create_app(settings, on_fatal)
        try:  # bound here so a taken port is a one-line error, not a traceback
            family = socket.AF_INET6 if ":" in args.host else socket.AF_INET
            # IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets whose proto says TCP, and
            # without it each keep-alive answer after the first waited ~40 ms for a delayed ACK.
            sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((args.host, args.port))
        except OSError as exc:
            print(f"error: cannot listen on {args.host}:{args.port}: {exc.strerror or exc}", file=sys.stderr)
            return exit_codes.SERVE_BIND
        # uvicorn's own access log is off: AccessLog writes one line per request through `aigc_eval`.
        server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on",
                                               timeout_graceful_shutdown=None))
        # uvicorn restores the handlers it found and re-raises the signal it stopped on; with these
        # no-ops in place that ends the process normally (exit 0) instead of killing it by signal.
        for stop_signal in (signal.SIGTERM, signal.SIGINT):
            signal.signal(stop_signal, lambda *_: None)
        server.run(sockets=[sock])
        if not server.started or failed:
            return EXIT_NO_WEIGHTS
        return EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
