"""Inception Score of a batch of generated images, and each image's top-1 class and KL term.

Reads a CSV with one row per generated image (id, prompt, image URL or local path) and
writes result_is.csv (the input's id, prompt and image, then top1_class, top1_label,
top1_confidence, kl, status, error, then the input's other columns) and a JSON summary
beside it (result_is.json: inception_score_mean, inception_score_std, num_images, splits).

The classifier is torchvision's Inception-v3 (IMAGENET1K_V1); each whole image is resized
to 299x299 (bilinear, antialiased, no crop, so off-centre products stay in view) and
normalised with ImageNet statistics. IS is computed exactly as torch-fidelity does
(float64, rows shuffled with numpy RandomState(2020), --splits chunks, population std),
from log-softmax so confident predictions stay finite. kl is KL(p(y|x) || p(y)) in nats
against the mean prediction of all scored images. The article: IS needs 500+ images to be
stable; smaller batches get a warning in the summary.

    python evaluate_is.py                             # output.csv -> result_is.csv, result_is.json
    python evaluate_is.py --input samples/sample.csv --save-logits logits.npy
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import torch
from torchvision import transforms as T
from tqdm import tqdm

import columns as col
from cli_support import (
    EXIT_OK,
    EXIT_ROW_ERRORS,
    add_column_arguments,
    add_runtime_arguments,
    flags,
    fetch_config_from,
    log,
    new_parser,
    run_cli,
    setup_logging,
)
from csv_io import read_rows, write_bytes_atomic, write_rows, write_text_atomic
from image_fetch import FetchConfig
from image_pipeline import PreparedRow, batched, prepare_rows, stack_inputs
from metrics import DEFAULT_IS_SPLITS, IS_SHUFFLE_SEED, inception_score, per_image_kl
from model_loading import load_inception, resolve_device

INCEPTION_SIZE = 299
IS_RESULT_COLUMNS = [col.TOP1_CLASS, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL, col.STATUS, col.ERROR]


def inception_transform() -> T.Compose:
    """PIL RGB image -> normalised (3, 299, 299) tensor, the whole image resized without crop."""
    return T.Compose([
        T.Resize((INCEPTION_SIZE, INCEPTION_SIZE), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.ToTensor(),
        T.Normalize(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)),
    ])


class InceptionScorer:
    """Inception-v3 logits for prepared rows, collected until the whole batch is known."""

    def __init__(self, model: torch.nn.Module, categories: Sequence[str], device: torch.device):
        self.model = model
        self.categories = list(categories)
        self.device = device
        self.transform = inception_transform()
        self.rows: list[dict[str, str]] = []
        self.errors: list[str] = []
        self._logits: list[torch.Tensor] = []

    @classmethod
    def load(cls, weights_path: Path | None, device: torch.device) -> "InceptionScorer":
        model, categories = load_inception(weights_path, device)
        return cls(model, categories, device)

    @torch.inference_mode()
    def add_batch(self, items: Sequence[PreparedRow], slot: int = 0) -> None:
        """Run the classifier on the rows that have an image; remember every row's outcome."""
        ok = [item for item in items if item.inputs is not None]
        logits = iter(self.model(stack_inputs(ok, slot, self.device)).float().cpu() if ok else [])
        for item in items:
            self.rows.append(item.row)
            self.errors.append(item.error)
            if item.inputs is not None:
                self._logits.append(next(logits))

    def logits(self) -> torch.Tensor:
        """(ok rows, classes) logits in row order."""
        return torch.stack(self._logits) if self._logits else torch.empty(0, len(self.categories))

    def results(self, splits: int) -> tuple[list[dict[str, object]], dict[str, object]]:
        """Per-row result fields merged into each row, and the summary for result_is.json."""
        logits = self.logits()
        n = logits.shape[0]
        summary: dict[str, object] = {
            col.KEY_IS_MEAN: None, col.KEY_IS_STD: None, col.KEY_NUM_IMAGES: n,
            col.KEY_SPLITS: min(splits, n), col.KEY_NUM_CLASSES: len(self.categories),
            col.KEY_NUM_ERRORS: len(self.rows) - n, "shuffle_seed": IS_SHUFFLE_SEED,
            "model": "torchvision inception_v3 IMAGENET1K_V1", col.KEY_WARNING: "",
        }
        if n:
            mean, std = inception_score(logits, splits=min(splits, n))
            summary.update({col.KEY_IS_MEAN: mean, col.KEY_IS_STD: std})
        if n < col.IS_MIN_STABLE_IMAGES:
            summary[col.KEY_WARNING] = (
                f"only {n} images scored: IS needs more than {col.IS_MIN_STABLE_IMAGES} to be stable"
                + (f"; splits reduced from {splits} to {n}" if 0 < n < splits else "")
            )
        probs = logits.double().softmax(dim=1)
        confidence, top1 = probs.max(dim=1) if n else (torch.empty(0), torch.empty(0, dtype=torch.long))
        kl = per_image_kl(logits) if n else torch.empty(0)
        out, k = [], 0
        for row, error in zip(self.rows, self.errors):
            if error:
                result = {col.STATUS: col.STATUS_ERROR, col.ERROR: error}
            else:
                cls = int(top1[k])
                result = {
                    col.TOP1_CLASS: cls, col.TOP1_LABEL: self.categories[cls],
                    col.TOP1_CONFIDENCE: f"{float(confidence[k]):.6f}", col.KL: f"{float(kl[k]):.6f}",
                    col.STATUS: col.STATUS_OK, col.ERROR: "",
                }
                k += 1
            out.append({**row, **result})
        return out, summary


def is_output_columns(header: Sequence[str], id_col: str, prompt_col: str, image_col: str) -> list[str]:
    """id, prompt, image, the IS result columns, then the input's remaining columns."""
    lead = [id_col, prompt_col, image_col]
    return lead + IS_RESULT_COLUMNS + [name for name in header if name not in lead + IS_RESULT_COLUMNS]


def summary_path_for(output_path: Path) -> Path:
    """result_is.csv -> result_is.json, beside it."""
    return Path(output_path).with_suffix(".json")


def write_is_outputs(
    scorer: InceptionScorer, header: Sequence[str], output_path: Path, splits: int,
    columns_: tuple[str, str, str], save_logits: Path | None,
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Write result_is.csv, result_is.json and optionally the logits .npy; return rows and summary."""
    rows, summary = scorer.results(splits)
    write_rows(output_path, is_output_columns(header, *columns_), rows)
    write_text_atomic(summary_path_for(output_path), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    if save_logits:
        buffer = io.BytesIO()
        np.save(buffer, scorer.logits().numpy())
        write_bytes_atomic(save_logits, buffer.getvalue())
    mean, std = summary[col.KEY_IS_MEAN], summary[col.KEY_IS_STD]
    log.info("wrote %s: IS %s over %d images", output_path,
             f"{mean:.4f} ± {std:.4f}" if mean is not None else "n/a", summary[col.KEY_NUM_IMAGES])
    if summary[col.KEY_WARNING]:
        log.warning("warning: %s", summary[col.KEY_WARNING])
    return rows, summary


def evaluate_is(
    input_path: Path,
    output_path: Path,
    *,
    id_col: str = col.ID,
    prompt_col: str = col.PROMPT,
    image_col: str = col.IMAGE_URL,
    weights: Path | None = None,
    splits: int = DEFAULT_IS_SPLITS,
    save_logits: Path | None = None,
    device: str | None = None,
    batch_size: int = 32,
    fetch: FetchConfig | None = None,
    workers: int = 4,
    quiet: bool = False,
) -> tuple[int, int]:
    """Score `input_path`, write result_is.csv and result_is.json; returns (rows, rows with errors)."""
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    scorer = InceptionScorer.load(weights, resolve_device(device))
    prepared = prepare_rows(rows, image_col, [scorer.transform], fetch or FetchConfig(), workers, Path(input_path).parent)
    with tqdm(total=len(rows), desc="Inception", unit="img", disable=quiet) as progress:
        for batch in batched(prepared, batch_size):
            scorer.add_batch(batch)
            progress.update(len(batch))
    out, summary = write_is_outputs(scorer, header, output_path, splits, (id_col, prompt_col, image_col), save_logits)
    return len(out), int(summary[col.KEY_NUM_ERRORS])


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_INPUT), help="CSV of generated images")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_IS_OUTPUT),
                        help="per-image CSV; the summary goes beside it with a .json suffix")
    add_column_arguments(parser)
    parser.add_argument("--weights", type=Path, default=None,
                        help="local Inception-v3 state_dict (default: torchvision IMAGENET1K_V1, downloaded once)")
    parser.add_argument("--splits", type=int, default=DEFAULT_IS_SPLITS, help="IS splits, as in torch-fidelity")
    parser.add_argument(*flags("save-logits"), dest="save_logits", type=Path, default=None,
                        help="write the logits of the ok rows, in order, as a .npy array")
    add_runtime_arguments(parser, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        _, errors = evaluate_is(
            args.input, args.output, id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col,
            weights=args.weights, splits=args.splits, save_logits=args.save_logits, device=args.device,
            batch_size=args.batch_size, fetch=fetch_config_from(args), workers=args.workers, quiet=args.quiet,
        )
        return EXIT_ROW_ERRORS if errors else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
