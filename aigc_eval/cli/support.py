"""Command-line plumbing shared by the scripts: common options, logging, one-line errors, exit codes.

Every multi-word flag takes both spellings, the article's snake_case and kebab-case
(`--clip_weight` and `--clip-weight`).
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Callable

from aigc_eval import columns as col
from aigc_eval import exit_codes
from aigc_eval.io.csv_io import InputError
from aigc_eval.io.image_fetch import FetchConfig, default_cache_dir
from aigc_eval.scoring.prompt_cleaning import CleaningOptions
from aigc_eval.scoring.runtime import RuntimeOptions

EXIT_OK = exit_codes.OK
EXIT_ROW_ERRORS = exit_codes.ROW_ERRORS
EXIT_USAGE = exit_codes.USAGE
EXIT_NO_WEIGHTS = exit_codes.NO_WEIGHTS
EXIT_CODES_HELP = exit_codes.help_line("scoring")



def flags(name: str) -> list[str]:
    """['--some-name', '--some_name'] for a multi-word option, ['--name'] otherwise."""
    kebab, snake = f"--{name}", f"--{name.replace('-', '_')}"
    return [kebab] if kebab == snake else [kebab, snake]


def new_parser(doc: str | None, epilog: str = "", exit_codes: str = EXIT_CODES_HELP) -> argparse.ArgumentParser:
    """A parser whose help shows defaults, the module docstring and the exit codes."""
    return argparse.ArgumentParser(
        description=doc,
        epilog=f"{epilog}\n\n{exit_codes}".strip(),
        formatter_class=type("Formatter", (argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter), {}),
    )


def add_column_arguments(parser: argparse.ArgumentParser) -> None:
    """--id-col, --prompt-col, --image-col: the input's column names."""
    parser.add_argument(*flags("id-col"), dest="id_col", default=col.ID, help="column with the row id")
    parser.add_argument(*flags("prompt-col"), dest="prompt_col", default=col.PROMPT, help="column with the prompt")
    parser.add_argument(*flags("image-col"), dest="image_col", default=col.IMAGE_URL, help="column with the image URL or local path")


def add_model_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--model, --model-dir, --weights: the Chinese-CLIP model and where both models' weights are."""
    from aigc_eval.scoring.model_loading import (  # loads torch: not at import
        CLIP_DEFAULT_MODEL,
        clip_model_names,
    )

    parser.add_argument("--model", default=CLIP_DEFAULT_MODEL, choices=clip_model_names(), help="Chinese-CLIP model")
    parser.add_argument(*flags("model-dir"), dest="model_dir", type=Path, default=None,
                        help="cn_clip download root holding clip_cn_<model>.pt (default: ~/.cache/clip)")
    parser.add_argument("--weights", type=Path, default=None, help="local Inception-v3 state_dict")


def _pairs(values: list[str] | None, flag: str) -> dict[str, str]:
    pairs = {}
    for value in values or []:
        key, sep, text = value.partition("=")
        if not sep or not key.strip() or not text.strip():
            raise ValueError(f"{flag} {value!r}: expected NAME=VALUE")
        pairs[key.strip()] = text.strip()
    return pairs


def add_decision_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--metrics, --weight NAME=W, --threshold NAME.RULE=V and --clip-ceiling, plus the older flags
    each metric declares as aliases (--clip_weight, --is_weight, --product-weight, --min-clip,
    --min-confidence), all from the metric registry."""
    from aigc_eval.metrics.registry import metric_classes
    from aigc_eval.scoring.metrics import DEFAULT_CLIP_CEILING

    classes = metric_classes()
    parser.add_argument("--metrics", default=None, metavar="A,B",
                        help=f"the metrics to run, comma-separated, from: {', '.join(classes)} (default: all but "
                             f"the opt-in {', '.join(n for n, c in classes.items() if not c.on_by_default) or '(none)'}, "
                             "which run when a --weight or --threshold uses them; product metrics run when the "
                             "input names a cut-out); e.g. --metrics product for a lightweight run with no model "
                             "weights")
    parser.add_argument("--weight", action="append", default=None, metavar="NAME=W",
                        help="a metric's weight in total_score; defaults: " + ", ".join(
                            f"{n}={c.term.default_weight:g}" for n, c in classes.items() if c.term))
    parser.add_argument("--threshold", action="append", default=None, metavar="NAME.RULE=V",
                        help="a regenerate rule's threshold, or on/off; defaults: " + ", ".join(
                            f"{n}.{r.name}={r.default:g}{'' if r.enabled else ' (off)'}"
                            for n, c in classes.items() for r in c.rules))
    for name, cls in classes.items():
        if cls.term is not None and cls.term.alias:
            parser.add_argument(*flags(cls.term.alias), dest=f"weight__{name}", type=float, default=None,
                                help=f"= --weight {name}=W (default {cls.term.default_weight:g})")
        for rule in cls.rules:
            if rule.alias:
                parser.add_argument(*flags(rule.alias), dest=f"threshold__{name}.{rule.name}", type=float, default=None,
                                    help=f"= --threshold {name}.{rule.name}=V (default {rule.default:g}): {rule.description}")
    parser.add_argument(*flags("clip-ceiling"), dest="clip_ceiling", type=float, default=DEFAULT_CLIP_CEILING,
                        help="CLIPScore that counts as a perfect match when normalising")
    parser.add_argument("--calibration", type=Path, default=None, metavar="calibration.json",
                        help="calibrate.py's file: learned weights for total_score, p_accept per image, and a "
                             "regenerate reason below its threshold")


def add_store_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, *, by_default: bool) -> None:
    """--store URL (and --no-store where recording is the default), --generator-version."""
    where = "(default: history.sqlite beside the score cache, or $AIGC_EVAL_STORE)"
    parser.add_argument("--store", default=None, metavar="URL",
                        help=f"the results store: a SQLite path or postgresql://... {where}" if by_default else
                        f"also record every answer in the results store: a SQLite path or postgresql://... ({where})")
    if by_default:
        parser.add_argument(*flags("no-store"), dest="no_store", action="store_true",
                            help="do not record this run in the results store")
    parser.add_argument(*flags("generator-version"), dest="generator_version", default="",
                        help="the generator's model or version, for rows without a generator_version column")


def open_recorder(args: argparse.Namespace, source: str, input_path: Path | None = None, metric_set: str | None = None,
                  calibration_hash: str | None = None, run_id: str | None = None):
    """The results store's Recorder for this run (None with --no-store, or without --store where
    recording is optional); a store that cannot be used spools (docs/store.md), never fails the run."""
    if getattr(args, "no_store", False) or (not hasattr(args, "no_store") and not args.store):
        return None
    import hashlib

    from aigc_eval.store import Recorder, RunInfo

    digest = hashlib.sha256(Path(input_path).read_bytes()).hexdigest() if input_path and Path(input_path).is_file() else None
    # A rerun of the same input is the same run: its rows replace the earlier ones, never doubled.
    run_id = run_id or (f"{source}-{digest[:16]}" if digest else None)
    run = RunInfo(**({"run_id": run_id} if run_id else {}), input_file=str(input_path) if input_path else None,
                  input_hash=digest, generator_version=args.generator_version, metric_set=metric_set,
                  calibration_hash=calibration_hash)
    return Recorder.open(args.store, source=source, run=run)


def decision_flags_from(args: argparse.Namespace) -> tuple[dict[str, float], dict[str, str]]:
    """(weights by metric, thresholds by metric.rule) that the decision flags give, aliases
    included; ValueError when a flag and its alias disagree."""
    weights: dict[str, float] = {}
    for key, text in _pairs(args.weight, "--weight").items():
        try:
            weights[key] = float(text)
        except ValueError:
            raise ValueError(f"--weight {key}={text}: not a number") from None
    thresholds = _pairs(args.threshold, "--threshold")
    for dest, value in vars(args).items():
        if value is None or not dest.startswith(("weight__", "threshold__")):
            continue
        kind, _, key = dest.partition("__")
        target: dict = weights if kind == "weight" else thresholds
        if key in target and float(target[key]) != value:
            raise ValueError(f"--{kind} {key}={target[key]} and its alias flag ({value:g}) disagree; give one")
        target[key] = value if kind == "weight" else str(value)
    return weights, thresholds


def add_cleaning_arguments(parser: argparse.ArgumentParser) -> None:
    """--no-clean, --prompt-rules, --subjects, --category-col: how prompts are cleaned before scoring."""
    parser.add_argument(*flags("no-clean"), dest="no_clean", action="store_true",
                        help="score prompts as given instead of their cleaned visual description")
    parser.add_argument(*flags("prompt-rules"), dest="prompt_rules", type=Path, default=None,
                        help="word lists for cleaning (default: aigc_eval/scoring/data/prompt_rules.json)")
    parser.add_argument("--subjects", type=Path, default=None,
                        help="category -> subject mapping appended to prompts lacking it (default: aigc_eval/scoring/data/category_subjects.json)")
    parser.add_argument(*flags("category-col"), dest="category_col", default=col.CATEGORY,
                        help="column with the product category (subject labels, per-category analysis)")


def cleaning_options_from(args: argparse.Namespace) -> CleaningOptions:
    """The CleaningOptions that add_cleaning_arguments' flags describe."""
    return CleaningOptions(not args.no_clean, args.prompt_rules, args.subjects, args.category_col)


def add_runtime_arguments(parser: argparse.ArgumentParser, batch_size: int) -> None:
    """Device, precision, batch size, fetching and cache options, and --quiet."""
    parser.add_argument("--device", default=None, help="torch device (default: cuda when available, else cpu)")
    parser.add_argument("--precision", default="auto", choices=col.PRECISIONS,
                        help="auto: fp16 on CUDA and bf16 on CPUs with native bf16 (AVX512-BF16/AMX), with Inception's "
                             "stem (up to Mixed_5c) kept in fp32, else fp32; fp32 is the reference; "
                             "bf16/fp16 apply to every layer of both models")
    parser.add_argument(*flags("batch-size"), dest="batch_size", type=int, default=batch_size, help="images per model batch")
    add_fetch_arguments(parser)


def add_fetch_arguments(parser: argparse.ArgumentParser) -> None:
    """Fetching and cache options, and --quiet (fetch_config_from reads them)."""
    parser.add_argument("--workers", type=int, default=4, help="threads fetching and decoding images")
    parser.add_argument("--timeout", type=float, default=20.0, help="seconds allowed for one image download")
    parser.add_argument("--retries", type=int, default=3, help="retries for connection errors, timeouts and HTTP 5xx")
    parser.add_argument(*flags("max-image-mb"), dest="max_image_mb", type=float, default=50.0, help="largest image download in MiB")
    parser.add_argument(*flags("cache-dir"), dest="cache_dir", type=Path, default=None,
                        help=f"cache of downloaded images and computed features (default: ${'{'}AIGC_EVAL_CACHE{'}'} or {default_cache_dir()})")
    parser.add_argument(*flags("no-cache"), dest="no_cache", action="store_true", help="do not read or write the image and score caches")
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bars or log lines on stderr")


def runtime_options_from(args: argparse.Namespace) -> RuntimeOptions:
    """The RuntimeOptions that add_runtime_arguments' flags describe."""
    return RuntimeOptions(args.device, args.precision, args.batch_size, args.workers, fetch_config_from(args), args.quiet)


def fetch_config_from(args: argparse.Namespace) -> FetchConfig:
    """The FetchConfig the runtime options describe."""
    if args.timeout <= 0 or args.retries < 0 or args.max_image_mb <= 0:
        raise ValueError("--timeout and --max-image-mb must be positive and --retries not negative")
    return FetchConfig(
        timeout=args.timeout,
        retries=args.retries,
        max_bytes=int(args.max_image_mb * 1024 * 1024),
        cache_dir=None if args.no_cache else (args.cache_dir or default_cache_dir()),
    )


def setup_logging(quiet: bool) -> None:
    """Log lines to stderr; --quiet keeps only warnings."""
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING if quiet else logging.INFO, format="%(message)s", force=True)


def _weights_missing_error() -> type[BaseException] | tuple[()]:
    """model_loading's WeightsMissingError when a script has loaded it; importing it here
    would load torch into scripts that need no model (message_listener.py)."""
    module = sys.modules.get("aigc_eval.scoring.model_loading")
    return module.WeightsMissingError if module is not None else ()


def run_cli(body: Callable[[], int]) -> int:
    """Run a script body, turning expected failures into one line on stderr and an exit code."""
    try:
        return body()
    except _weights_missing_error() as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_NO_WEIGHTS
    except (InputError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:
        print(f"error: {exc.filename or ''}: {exc.strerror or exc}".replace(": : ", ": "), file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("error: interrupted; no output was replaced", file=sys.stderr)
        return 130
