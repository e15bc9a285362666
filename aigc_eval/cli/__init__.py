"""The command line: each stage's parser and main() (one module per stage, the root scripts call
them), the options they share (support.py), and `aigc-eval`, one command with a subcommand per
stage taking the same flags as its script."""

from __future__ import annotations

import importlib
import sys
from typing import Sequence

# subcommand -> (module whose main() runs it, what it does); the keys are the command's choices.
SUBCOMMANDS: dict[str, tuple[str, str]] = {
    "listen": ("aigc_eval.cli.listen", "message_listener.py: NSQ topic -> output.csv, each message once"),
    "generate": ("aigc_eval.cli.generate", "generate_request.py: data.csv -> images over Dubbo -> output.csv, error.csv"),
    "clipscore": ("aigc_eval.cli.clipscore", "evaluate_clipscore.py: output.csv -> result_clip.csv"),
    "is": ("aigc_eval.cli.inception", "evaluate_is.py: output.csv -> result_is.csv, result_is.json"),
    "product": ("aigc_eval.cli.product", "evaluate_product.py: output.csv + cut-outs -> result_product.csv"),
    "serve": ("aigc_eval.cli.serve", "serve.py: score images online over HTTP (POST /v1/score)"),
    "stream": ("aigc_eval.cli.stream", "evaluate_stream.py: score each image as NSQ delivers it, sharded CSVs"),
    "history": ("aigc_eval.cli.history", "the results store: upgrade, import old runs or a spool, check for regressions"),
    "dashboard": ("aigc_eval.cli.dashboard", "a local web page of the store's trends, comparisons, alarms"),
    "score": ("aigc_eval.cli.score", "main.py: merge and decide (--input X.csv scores X.csv first; --compare A B)"),
    "calibrate": ("aigc_eval.cli.calibrate", "calibrate.py: result_total.csv + labels.csv -> calibration.json, agreement report"),
    "labels-from-retries": ("aigc_eval.cli.labels_from_retries", "output.csv with session_id -> labels CSV from merchants' retries"),
    "label": ("aigc_eval.cli.label", "label.py: review result_total.csv in the browser -> labels.csv; Label Studio in/out"),
}
# Other names for a subcommand, with arguments put in front of the user's.
ALIASES: dict[str, tuple[str, tuple[str, ...]]] = {
    "main": ("score", ()),
    "merge": ("score", ()),
    "compare": ("score", ("--compare",)),
}

USAGE = "usage: aigc-eval SUBCOMMAND [flags]    (aigc-eval SUBCOMMAND --help lists its flags)"


def usage() -> str:
    """The command's help: one line per subcommand and alias."""
    lines = [USAGE, "", "subcommands:"]
    lines += [f"  {name:<10} {text}" for name, (_, text) in SUBCOMMANDS.items()]
    lines += [f"  {name:<10} = {' '.join((target, *extra))}" for name, (target, extra) in ALIASES.items()]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run `aigc-eval SUBCOMMAND [flags]`: the subcommand's main() with the remaining flags."""
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage())
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name in ALIASES:
        name, extra = ALIASES[name]
        rest = [*extra, *rest]
    if name not in SUBCOMMANDS:
        print(f"error: unknown subcommand {args[0]!r}; choose one of {', '.join([*SUBCOMMANDS, *ALIASES])}", file=sys.stderr)
        return 2
    module = importlib.import_module(SUBCOMMANDS[name][0])  # imported on demand: `listen` never loads torch
    sys.argv[0] = f"aigc-eval {name}"  # argparse names the program after it in usage lines
    return module.main(rest)
