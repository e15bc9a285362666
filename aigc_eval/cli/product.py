"""`evaluate_product.py` and `aigc-eval product`: the parser, and a call into product.evaluate;
the product options main.py shares."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.cli.support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_column_arguments,
    add_fetch_arguments,
    fetch_config_from,
    flags,
    new_parser,
    run_cli,
    setup_logging,
)
from aigc_eval.product import evaluate
from aigc_eval.product.check import THRESHOLD_HELP, ProductThresholds
from aigc_eval.product.composition import PROFILES
from aigc_eval.product.stage import ProductOptions


def _escaped(text: str) -> str:
    """Help text with argparse's % escaped (the profiles' rules are percentages)."""
    return text.replace("%", "%%")


def add_product_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup) -> None:
    """--product-col, --profile and one flag per ProductThresholds field, with its default."""
    parser.add_argument(*flags("product-col"), dest="product_col", default=col.PRODUCT_IMAGE_URL,
                        help="column with the merchant's cut-out (RGBA PNG URL or path)")
    parser.add_argument("--profile", default="default", choices=sorted(PROFILES),
                        help=_escaped("composition rules: " + "; ".join(f"{name}: {p.summary}" for name, p in sorted(PROFILES.items()))))
    for field in dataclasses.fields(ProductThresholds):
        parser.add_argument(*flags(field.name.replace("_", "-")), dest=field.name, type=type(field.default),
                            default=field.default, help=_escaped(THRESHOLD_HELP[field.name]))


def product_options_from(args: argparse.Namespace) -> ProductOptions:
    """The ProductOptions that add_product_arguments' flags describe."""
    thresholds = ProductThresholds(**{field.name: getattr(args, field.name) for field in dataclasses.fields(ProductThresholds)})
    return ProductOptions(args.product_col, args.profile, thresholds)


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(evaluate.__doc__)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_INPUT), help="CSV of generated images and cut-outs")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_PRODUCT_OUTPUT), help="per-image product check CSV")
    add_column_arguments(parser)
    add_product_arguments(parser.add_argument_group("product checks"))
    add_fetch_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        _, errors = evaluate.evaluate_product(
            args.input, args.output, id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col,
            options=product_options_from(args), fetch=fetch_config_from(args), workers=args.workers, quiet=args.quiet)
        return EXIT_ROW_ERRORS if errors else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
