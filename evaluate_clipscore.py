"""CLIPScore of each generated image against its prompt, with Chinese-CLIP (cn_clip).

Reads a CSV with one row per generated image (id, prompt, image URL or local path) and
writes result_clip.csv: the input's id, prompt and image, then clip_score, prompt_tokens,
prompt_truncated, status and error, then the input's other columns.

CLIPScore here is the cosine similarity of the L2-normalised image and text embeddings,
as the article uses it: -1..1 in theory, mostly 0..0.6 in practice (an exact match scores
about 0.55-0.60, a wrong object below 0.20). It is not Hessel et al.'s 2.5*max(cos, 0)
nor torchmetrics' 100*cos. Prompts longer than the model's 52-token context are cut by
cn_clip; prompt_truncated records it.

    python evaluate_clipscore.py                      # output.csv -> result_clip.csv
    python evaluate_clipscore.py --input samples/sample.csv --output result_clip.csv
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import torch
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
from csv_io import AtomicCsvWriter, read_rows
from image_fetch import FetchConfig
from image_pipeline import PreparedRow, batched, prepare_rows, stack_inputs
from metrics import clip_score
from model_loading import CLIP_DEFAULT_MODEL, clip_model_names, load_chinese_clip, resolve_device

CONTEXT_LENGTH = 52  # every released Chinese-CLIP model uses 52 text tokens
CLIP_RESULT_COLUMNS = [col.CLIP_SCORE, col.PROMPT_TOKENS, col.PROMPT_TRUNCATED, col.STATUS, col.ERROR]


def count_prompt_tokens(prompt: str) -> int:
    """Tokens cn_clip would produce for `prompt` before truncation, [CLS] and [SEP] included."""
    from cn_clip.clip import _tokenizer

    return len(_tokenizer.tokenize(prompt)) + 2


class ClipScorer:
    """A loaded Chinese-CLIP model that scores batches of (image tensor, prompt)."""

    def __init__(self, model: torch.nn.Module, transform, device: torch.device):
        self.model = model
        self.transform = transform
        self.device = device
        self._text_cache: dict[str, torch.Tensor] = {}

    @classmethod
    def load(cls, model_name: str, model_dir: str | Path | None, device: torch.device) -> "ClipScorer":
        """Load `model_name` from `model_dir` (downloading when missing) onto `device`."""
        model, transform = load_chinese_clip(model_name, model_dir, device)
        return cls(model, transform, device)

    @torch.inference_mode()
    def encode_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (N, D) on the CPU; each distinct prompt is encoded once per run."""
        from cn_clip.clip import tokenize

        new = list(dict.fromkeys(p for p in prompts if p not in self._text_cache))
        if new:
            tokens = tokenize(new, context_length=CONTEXT_LENGTH).to(self.device)
            for prompt, emb in zip(new, self.model.encode_text(tokens).float().cpu()):
                self._text_cache[prompt] = emb
        return torch.stack([self._text_cache[p] for p in prompts])

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings (N, D) on the CPU for a batch of transformed images."""
        return self.model.encode_image(pixels.to(self.device)).float().cpu()

    def score_batch(self, items: Sequence[PreparedRow], prompt_col: str, slot: int = 0) -> list[dict[str, object]]:
        """Result fields (the CLIP_RESULT_COLUMNS) for each prepared row, in order."""
        results: list[dict[str, object]] = []
        scorable: list[tuple[int, str]] = []
        for index, item in enumerate(items):
            prompt = item.row.get(prompt_col, "").strip()
            result: dict[str, object] = {col.STATUS: col.STATUS_ERROR, col.ERROR: item.error}
            if prompt:
                tokens = count_prompt_tokens(prompt)
                result.update({col.PROMPT_TOKENS: tokens, col.PROMPT_TRUNCATED: str(tokens > CONTEXT_LENGTH).lower()})
            if item.inputs is not None and not prompt:
                result[col.ERROR] = f"empty prompt in column {prompt_col}"
            elif item.inputs is not None:
                scorable.append((index, prompt))
            results.append(result)
        if scorable:
            pixels = stack_inputs([items[i] for i, _ in scorable], slot, self.device)
            scores = clip_score(self.encode_images(pixels), self.encode_texts([p for _, p in scorable]))
            for (index, _), score in zip(scorable, scores.tolist()):
                results[index].update({col.CLIP_SCORE: f"{score:.6f}", col.STATUS: col.STATUS_OK, col.ERROR: ""})
        return results


def clip_output_columns(header: Sequence[str], id_col: str, prompt_col: str, image_col: str) -> list[str]:
    """id, prompt, image, the CLIP result columns, then the input's remaining columns."""
    lead = [id_col, prompt_col, image_col]
    return lead + CLIP_RESULT_COLUMNS + [name for name in header if name not in lead + CLIP_RESULT_COLUMNS]


def score_rows_with_clip(
    prepared: Iterable[PreparedRow], scorer: ClipScorer, prompt_col: str, batch_size: int
) -> Iterator[dict[str, object]]:
    """Each input row merged with its CLIP result fields, in input order."""
    for batch in batched(prepared, batch_size):
        for item, result in zip(batch, scorer.score_batch(batch, prompt_col)):
            yield {**item.row, **result}


def evaluate_clipscore(
    input_path: Path,
    output_path: Path,
    *,
    id_col: str = col.ID,
    prompt_col: str = col.PROMPT,
    image_col: str = col.IMAGE_URL,
    model_name: str = CLIP_DEFAULT_MODEL,
    model_dir: Path | None = None,
    device: str | None = None,
    batch_size: int = 32,
    fetch: FetchConfig | None = None,
    workers: int = 4,
    quiet: bool = False,
) -> tuple[int, int]:
    """Score every row of `input_path` and write `output_path`; returns (rows, rows with errors)."""
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    scorer = ClipScorer.load(model_name, model_dir, resolve_device(device))
    fetch = fetch or FetchConfig()
    prepared = prepare_rows(rows, image_col, [scorer.transform], fetch, workers, Path(input_path).parent)
    errors = 0
    with AtomicCsvWriter(output_path, clip_output_columns(header, id_col, prompt_col, image_col)) as writer:
        progress = tqdm(total=len(rows), desc="CLIPScore", unit="img", disable=quiet)
        for row in score_rows_with_clip(prepared, scorer, prompt_col, batch_size):
            errors += row[col.STATUS] != col.STATUS_OK
            writer.write(row)
            progress.update()
        progress.close()
        writer.commit()
    log.info("wrote %s: %d rows, %d errors", output_path, len(rows), errors)
    return len(rows), errors


def main(argv: Sequence[str] | None = None) -> int:
    parser = new_parser(__doc__)
    parser.add_argument("--input", type=Path, default=Path(col.DEFAULT_INPUT), help="CSV of generated images")
    parser.add_argument("--output", type=Path, default=Path(col.DEFAULT_CLIP_OUTPUT), help="per-image CLIPScore CSV")
    add_column_arguments(parser)
    parser.add_argument("--model", default=CLIP_DEFAULT_MODEL, choices=clip_model_names(), help="Chinese-CLIP model")
    parser.add_argument(*flags("model-dir"), dest="model_dir", type=Path, default=None,
                        help="cn_clip download root holding clip_cn_<model>.pt (default: ~/.cache/clip)")
    add_runtime_arguments(parser, batch_size=32)
    args = parser.parse_args(argv)
    setup_logging(args.quiet)

    def body() -> int:
        _, errors = evaluate_clipscore(
            args.input, args.output, id_col=args.id_col, prompt_col=args.prompt_col, image_col=args.image_col,
            model_name=args.model, model_dir=args.model_dir, device=args.device, batch_size=args.batch_size,
            fetch=fetch_config_from(args), workers=args.workers, quiet=args.quiet,
        )
        return EXIT_ROW_ERRORS if errors else EXIT_OK

    return run_cli(body)


if __name__ == "__main__":
    raise SystemExit(main())
