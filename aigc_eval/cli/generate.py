"""`generate_request.py` and `aigc-eval generate`: the parser, and a call into generation.runner."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from aigc_eval import exit_codes
from aigc_eval import columns as col
from aigc_eval.cli.support import flags, new_parser, run_cli, setup_logging
from aigc_eval.generation import runner
from aigc_eval.generation.dubbo import (
    TRANSPORTS,
    ServiceAddress,
    SetupError,
    parse_host_port,
)
from aigc_eval.generation.request_template import (
    DEFAULT_RESPONSE_PATH,
    DEFAULT_TEMPLATE,
    RequestTemplate,
)
from aigc_eval.generation.runner import (
    EXIT_INTERRUPTED,
    EXIT_LOCKED,
    EXIT_SERVICE,
    CallPolicy,
    generate_requests,
)
from aigc_eval.generation.state import LockHeldError

EXIT_CODES_HELP = exit_codes.help_line("generate")
ENV_PREFIX = "AIGC_DUBBO_"


def _env(name: str, default: str | None = None) -> str | None:
    return os.environ.get(ENV_PREFIX + name.upper(), default)


def build_parser() -> argparse.ArgumentParser:
    parser = new_parser(runner.__doc__)
    parser.epilog = EXIT_CODES_HELP  # new_parser's epilog lists the evaluators' codes
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_GENERATE_INPUT), help="CSV of products and prompts")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_GENERATE_OUTPUT),
                        help="CSV of generated images, one row per image (the evaluators' default input)")
    parser.add_argument("--error", type=Path, default=Path(col.DEFAULT_GENERATE_ERROR), help="CSV of rows that failed, with why")
    parser.add_argument(*flags("retry-errors"), dest="retry_errors", action="store_true",
                        help="call only the rows of the error file again (not those rejected as invalid)")
    service = parser.add_argument_group("service (defaults from AIGC_DUBBO_<NAME> environment variables)")
    service.add_argument("--transport", choices=sorted(TRANSPORTS), default=_env("transport", "jsonrpc"),
                         help="jsonrpc: providers found in ZooKeeper; telnet: Dubbo's invoke command to --provider")
    service.add_argument("--zookeeper", default=_env("zookeeper", "127.0.0.1:2181"), help="host:port[,host:port...] (jsonrpc)")
    service.add_argument("--provider", default=_env("provider"), help="host:port of the dubbo telnet or QoS port (telnet)")
    service.add_argument("--interface", default=_env("interface"), help="Dubbo interface, such as com.foo.ImageService")
    service.add_argument("--method", default=_env("method"), help="method to call")
    service.add_argument("--version", default=_env("version", ""), help="provider version (jsonrpc)")
    service.add_argument("--group", default=_env("group", ""), help="provider group (jsonrpc)")
    service.add_argument("--template", default=DEFAULT_TEMPLATE,
                         help="JSON array of the call's arguments, {column} placeholders, or @file.json")
    service.add_argument(*flags("response-path"), dest="response_path", default=DEFAULT_RESPONSE_PATH,
                         help="where the image URLs are in the result: keys, indices, * for each element")
    calls = parser.add_argument_group("calls")
    calls.add_argument("--workers", type=int, default=4, help="calls in flight at once")
    calls.add_argument("--qps", type=float, default=0.0, help="most calls started per second (0: no limit)")
    calls.add_argument("--timeout", type=float, default=60.0, help="seconds allowed for one call")
    calls.add_argument("--retries", type=int, default=3, help="retries of a transient failure (refused, reset, timeout, no provider)")
    calls.add_argument("--backoff", type=float, default=1.0, help="first retry's delay in seconds; doubles each time, with jitter")
    calls.add_argument(*flags("connect-timeout"), dest="connect_timeout", type=float, default=10.0,
                       help="seconds allowed to reach ZooKeeper")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or log lines on stderr")
    return parser


def _connector(args: argparse.Namespace, address: ServiceAddress) -> Callable[[], Any]:
    if args.transport == "telnet":
        if not args.provider:
            raise ValueError("--transport telnet needs --provider host:port (or AIGC_DUBBO_PROVIDER)")
        transport = TRANSPORTS["telnet"](args.provider, address, args.timeout)  # checks host:port now
        return lambda: transport
    for host in args.zookeeper.split(","):
        parse_host_port(host, "--zookeeper")
    return lambda: TRANSPORTS["jsonrpc"](args.zookeeper, address, args.timeout, args.connect_timeout)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    setup_logging(args.quiet)

    def on_sigterm(signum, frame):  # cron's kill: stop like Ctrl-C, saving finished rows
        raise KeyboardInterrupt

    def body() -> int:
        if not args.interface or not args.method:
            raise ValueError("--interface and --method are required (or AIGC_DUBBO_INTERFACE and AIGC_DUBBO_METHOD)")
        address = ServiceAddress(args.interface, args.method, args.version, args.group)
        policy = CallPolicy(args.workers, args.qps, args.timeout, args.retries, args.backoff).check()
        connect = _connector(args, address)
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, on_sigterm)
        try:
            summary = generate_requests(args.input, args.output, args.error, connect, RequestTemplate(args.template),
                                        args.response_path, policy, retry_errors=args.retry_errors, quiet=args.quiet)
        except SetupError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_SERVICE
        except LockHeldError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_LOCKED
        except KeyboardInterrupt:
            print(f"error: interrupted; finished rows are saved in {args.output} and {args.error}, rerun to continue",
                  file=sys.stderr)
            return EXIT_INTERRUPTED
        return summary.exit_code

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
