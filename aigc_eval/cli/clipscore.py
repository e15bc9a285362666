"""`evaluate_clipscore.py` and `aigc-eval clipscore`: the parser, and a call into scoring.clipscore."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from aigc_eval import columns as col
from aigc_eval.cli.support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_cleaning_arguments,
    add_column_arguments,
    add_runtime_arguments,
    cleaning_options_from,
    flags,
    new_parser,
    run_cli,
    runtime_options_from,
    setup_logging,
)
from aigc_eval.scoring import clipscore
from aigc_eval.scoring.clipscore import evaluate_clipscore
from aigc_eval.scoring.model_loading import CLIP_DEFAULT_MODEL, clip_model_names


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(clipscore.__doc__)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_INPUT), help="CSV of generated images")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_CLIP_OUTPUT), help="per-image CLIPScore CSV")
    add_column_arguments(parser)
    parser.add_argument("--model", default=CLIP_DEFAULT_MODEL, choices=clip_model_names(), help="Chinese-CLIP model")
    parser.add_argument(*flags("model-dir"), dest="model_dir", type=Path, default=None,
                        help="cn_clip download root holding clip_cn_<model>.pt (default: ~/.cache/clip)")
    add_cleaning_arguments(parser)
    add_runtime_arguments(parser, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        _, errors = evaluate_clipscore(
            args.input, args.output, id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col,
            model_name=args.model, model_dir=args.model_dir, cleaning=cleaning_options_from(args),
            runtime=runtime_options_from(args),
        )
        return EXIT_ROW_ERRORS if errors else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
