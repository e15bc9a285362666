"""`evaluate_is.py` and `aigc-eval is`: the parser, and a call into scoring.inception."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.cli.support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_column_arguments,
    add_runtime_arguments,
    flags,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from aigc_eval.scoring import inception
from aigc_eval.scoring.inception import evaluate_is
from aigc_eval.scoring.metrics import DEFAULT_IS_SPLITS


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(inception.__doc__)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_INPUT), help="CSV of generated images")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_IS_OUTPUT),
                        help="per-image CSV; the summary goes beside it with a .json suffix")
    add_column_arguments(parser)
    parser.add_argument("--weights", type=Path, default=None,
                        help="local Inception-v3 state_dict (default: torchvision IMAGENET1K_V1, downloaded once)")
    parser.add_argument("--splits", type=int, default=DEFAULT_IS_SPLITS,
                        help="IS splits, as in torch-fidelity (1 when there are fewer images)")
    parser.add_argument(*flags("category-col"), dest="category_col", default=col.CATEGORY,
                        help="column with the product category: result_is.json gets a one-split IS per category")
    parser.add_argument(*flags("save-logits"), dest="save_logits", type=Path, default=None,
                        help="write the logits of the ok rows, in order, as a .npy array")
    add_runtime_arguments(parser, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        _, errors = evaluate_is(
            args.input, args.output, id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col,
            weights=args.weights, splits=args.splits, save_logits=args.save_logits, category_col=args.category_col,
            runtime=runtime_options_from(args),
        )
        return EXIT_ROW_ERRORS if errors else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
