"""CLIPScore of each generated image against its prompt, with Chinese-CLIP (cn_clip).

Reads a CSV with one row per generated image (id, prompt, image URL or local path) and
writes result_clip.csv: the input's id, prompt and image, then clip_score, prompt_tokens,
prompt_truncated, status (ok, error or skipped) and error, raw_prompt, then the input's
other columns.

By default the prompt scored is the cleaned one (prompt_cleaning.clean_prompt: the user's
visual description without system messages, parameters or commands, with the product
subject added from the category); the prompt as given is kept in raw_prompt, and a row
with nothing visual left is `skipped`. --no-clean scores prompts as given.

CLIPScore here is the cosine similarity of the L2-normalised image and text embeddings,
as the article uses it: -1..1 in theory, mostly 0..0.6 in practice (an exact match scores
about 0.55-0.60, a wrong object below 0.20). It is not Hessel et al.'s 2.5*max(cos, 0)
nor torchmetrics' 100*cos. Prompts longer than the model's 52-token context are cut by
cn_clip; prompt_truncated records it.

    python evaluate_clipscore.py                      # output.csv -> result_clip.csv
    python evaluate_clipscore.py --input samples/sample.csv --output result_clip.csv
"""

from __future__ import annotations

import hashlib
from functools import partial
from pathlib import Path
from typing import Callable, Iterable, Iterator, Sequence

import torch
from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import AtomicCsvWriter, read_rows
from aigc_eval.scoring.image_pipeline import (
    PREPROCESSING_VERSION,
    PixelTransform,
    PreparedRow,
    batched,
    features_for,
    pending_inputs,
    prepare_rows,
    warm_up_when_needed,
)
from aigc_eval.scoring.metrics import clip_score
from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead
from aigc_eval.scoring.model_loading import (
    CLIP_DEFAULT_MODEL,
    LazyModel,
    autocast,
    clip_checkpoint_path,
    clip_input_resolution,
    clip_model_names,
    load_chinese_clip,
    resolve_device,
    resolve_precision,
    streamline_chinese_clip,
)
from aigc_eval.scoring.prompt_cleaning import CleaningOptions, clean_rows
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import ScoreCache, open_cache, weights_key

CONTEXT_LENGTH = 52  # every released Chinese-CLIP model uses 52 text tokens
NOTHING_VISUAL = "no visual description left after cleaning the prompt (see raw_prompt)"
# cn_clip's image_transform: bicubic resize to a square, then these statistics.
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
CLIP_RESULT_COLUMNS = [col.CLIP_SCORE, col.PROMPT_TOKENS, col.PROMPT_TRUNCATED, col.STATUS, col.ERROR]
CLIP_FORMATS = {col.CLIP_SCORE: ".6f"}  # how result_clip.csv writes the score


def count_prompt_tokens(prompt: str) -> int:
    """Tokens cn_clip would produce for `prompt` before truncation, [CLS] and [SEP] included."""
    from cn_clip.clip import _tokenizer

    return len(_tokenizer.tokenize(prompt)) + 2


class ClipScorer:
    """Chinese-CLIP scoring of prepared rows against their prompts, with cached embeddings."""

    def __init__(self, model: LazyModel, input_size: int, device: torch.device, dtype: torch.dtype = torch.float32,
                 cache: ScoreCache | None = None, model_key: str = ""):
        self.model = model
        self.input_size = input_size
        self.transform = PixelTransform(input_size, "bicubic", CLIP_MEAN, CLIP_STD)
        self.device = device
        self.dtype = dtype
        self.cache = cache if model_key else None
        self.model_key = f"{model_key}|{dtype}|{PREPROCESSING_VERSION}"
        self.text_embeddings: dict[str, torch.Tensor] = {}  # prompt -> embedding, filled by encode_texts
        self.computed = self.reused = 0  # image embeddings computed now / read from the score cache

    @classmethod
    def load(cls, model_name: str, model_dir: str | Path | None, device: torch.device, precision: str = "fp32",
             cache: ScoreCache | None = None) -> "ClipScorer":
        """Prepare `model_name` from `model_dir` on `device`: downloaded now when missing (or a
        WeightsMissingError), read from disk when first needed."""
        if model_name not in clip_model_names():
            raise ValueError(f"--model {model_name}: not a Chinese-CLIP model; choose from {', '.join(clip_model_names())}")
        dtype = resolve_precision(precision, device)
        model = LazyModel(lambda: streamline_chinese_clip(load_chinese_clip(model_name, model_dir, device)[0], dtype))
        checkpoint = clip_checkpoint_path(model_name, model_dir)
        if not checkpoint.is_file():
            model.get()
        key = f"cn_clip:{model_name}:{weights_key(checkpoint)}"
        return cls(model, clip_input_resolution(model_name), device, dtype, cache, key)

    def cached_features(self, digest: str) -> torch.Tensor | None:
        """This image's embedding from the score cache, if an earlier run computed it."""
        return self.cache.get("clip_image", self.model_key, digest) if self.cache else None

    def encode_texts(self, prompts: Sequence[str]) -> torch.Tensor:
        """Text embeddings (N, D) on the CPU; each distinct prompt is encoded once, ever, per model."""
        missing = [p for p in dict.fromkeys(prompts) if p not in self.text_embeddings]
        keys = {p: hashlib.sha256(p.encode("utf-8")).hexdigest() for p in missing}
        for prompt in missing:
            found = self.cache.get("clip_text", self.model_key, keys[prompt]) if self.cache else None
            if found is not None:
                self.text_embeddings[prompt] = found
        new = [p for p in missing if p not in self.text_embeddings]
        if new:
            for prompt, emb in zip(new, self._encode_new_texts(new)):
                self.text_embeddings[prompt] = emb
            if self.cache:
                self.cache.put_many("clip_text", self.model_key, [(keys[p], self.text_embeddings[p]) for p in new])
        return torch.stack([self.text_embeddings[p] for p in prompts])

    @torch.inference_mode()
    def _encode_new_texts(self, prompts: list[str]) -> torch.Tensor:
        from cn_clip.clip import _tokenizer, tokenize

        tokens = tokenize(prompts, context_length=CONTEXT_LENGTH)
        # Padding is masked out of attention, so trailing pad columns only cost time.
        length = int(tokens.ne(_tokenizer.vocab["[PAD]"]).sum(dim=1).max())
        tokens = tokens[:, :length].to(self.device)
        with autocast(self.device, self.dtype):
            return self.model.get().encode_text(tokens).float().cpu()

    @torch.inference_mode()
    def encode_images(self, pixels: torch.Tensor) -> torch.Tensor:
        """Image embeddings (N, D) on the CPU for a batch of PixelTransform outputs."""
        pixels = self.transform.normalise(pixels.to(self.device))
        with autocast(self.device, self.dtype):
            return self.model.get().encode_image(pixels).float().cpu()

    def submit_batch(self, items: Sequence[PreparedRow], prompt_col: str, lanes: ModelLanes,
                     slot: int = 0, embeddings: list | None = None) -> Callable[[], list[dict[str, object]]]:
        """Queue this batch's model work in `lanes` (its prompts, then its images split across
        the lanes) and return a function that waits for it and returns score_batch's results."""
        prompts = [item.row.get(prompt_col, "").strip() for item in items if item.ok]
        texts = lanes.submit(self.encode_texts, [p for p in prompts if p]) if any(prompts) else None
        inputs = pending_inputs(items, slot)
        images = lanes.split(self.encode_images, inputs) if inputs is not None else None

        def finish() -> list[dict[str, object]]:
            if texts is not None:
                texts.result()  # encoded in a lane: score_batch finds every prompt's embedding ready
            return self.score_batch(items, prompt_col, slot, images.result() if images is not None else None,
                                    embeddings)

        return finish

    def score_batch(self, items: Sequence[PreparedRow], prompt_col: str, slot: int = 0,
                    computed: torch.Tensor | None = None, embeddings: list | None = None) -> list[dict[str, object]]:
        """Result fields (the CLIP_RESULT_COLUMNS) for each prepared row, in order; `computed`
        holds the embeddings of the batch's pending_inputs when they were encoded elsewhere.
        A list passed as `embeddings` is extended with each row's image embedding (None for a
        row whose image failed), for the distribution metrics."""
        results: list[dict[str, object]] = []
        for item in items:
            prompt = item.row.get(prompt_col, "").strip()
            result: dict[str, object] = {col.STATUS: col.STATUS_ERROR, col.ERROR: item.error}
            if prompt:
                tokens = count_prompt_tokens(prompt)
                result.update({col.PROMPT_TOKENS: tokens, col.PROMPT_TRUNCATED: str(tokens > CONTEXT_LENGTH).lower()})
            elif item.ok and item.row.get(col.RAW_PROMPT, "").strip():
                result.update({col.STATUS: col.STATUS_SKIPPED, col.ERROR: NOTHING_VISUAL})
            elif item.ok:
                result[col.ERROR] = f"empty prompt in column {prompt_col}"
            results.append(result)
        # Images are embedded even when their prompt is empty: the embedding is cached for later runs.
        image_emb, new = features_for(items, slot, self.encode_images, computed)
        self.computed, self.reused = self.computed + len(new), self.reused + len(image_emb) - len(new)
        if self.cache:
            self.cache.put_many("clip_image", self.model_key, new)
        ok_indices = [i for i, item in enumerate(items) if item.ok]
        if embeddings is not None:
            found = dict(zip(ok_indices, image_emb))
            embeddings.extend(found.get(i) for i in range(len(items)))
        scorable = [(i, emb) for i, emb in zip(ok_indices, image_emb) if items[i].row.get(prompt_col, "").strip()]
        if scorable:
            prompts = [items[i].row[prompt_col].strip() for i, _ in scorable]
            scores = clip_score(torch.stack([emb for _, emb in scorable]), self.encode_texts(prompts))
            for (index, _), score in zip(scorable, scores.tolist()):
                results[index].update({col.CLIP_SCORE: score, col.STATUS: col.STATUS_OK, col.ERROR: ""})
        return results


def clip_output_columns(header: Sequence[str], id_col: str, prompt_col: str, image_col: str) -> list[str]:
    """id, prompt, image, the CLIP result columns, raw_prompt, then the input's remaining columns."""
    lead = [id_col, prompt_col, image_col] + CLIP_RESULT_COLUMNS + [col.RAW_PROMPT]
    return lead + [name for name in header if name not in lead]


def score_rows_with_clip(
    prepared: Iterable[PreparedRow], scorer: ClipScorer, prompt_col: str, batch_size: int, lanes: ModelLanes
) -> Iterator[dict[str, object]]:
    """Each input row merged with its CLIP result fields, in input order; the model work is
    shared out to `lanes`, a batch ahead."""
    prepared = warm_up_when_needed(prepared, [partial(lanes.warm_up, scorer.model.get)])
    submit = partial(scorer.submit_batch, prompt_col=prompt_col, lanes=lanes)
    for batch, results in queued_ahead(batched(prepared, batch_size), submit):
        for item, result in zip(batch, results):
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
    cleaning: CleaningOptions | None = None,
    runtime: RuntimeOptions | None = None,
) -> tuple[int, int]:
    """Score every row of `input_path` and write `output_path`; returns (rows, rows with status error).

    Prompts are cleaned first (see prompt_cleaning.clean_rows) unless `cleaning` disables it.
    """
    runtime, cleaning = runtime or RuntimeOptions(), cleaning or CleaningOptions()
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    rows = clean_rows(rows, prompt_col, cleaning, col.RAW_PROMPT)
    cache = open_cache(runtime.fetch.cache_dir)
    scorer = ClipScorer.load(model_name, model_dir, resolve_device(runtime.device), runtime.precision, cache)
    prepared = prepare_rows(rows, image_col, [scorer], runtime.fetch, runtime.workers, Path(input_path).parent,
                            ahead=2 * runtime.batch_size)
    errors = 0
    with AtomicCsvWriter(output_path, clip_output_columns(header, id_col, prompt_col, image_col), CLIP_FORMATS) as writer, \
            ModelLanes(scorer.device) as lanes:
        with tqdm(total=len(rows), desc="CLIPScore", unit="img", disable=runtime.quiet) as progress:
            for row in score_rows_with_clip(prepared, scorer, prompt_col, runtime.batch_size, lanes):
                errors += row[col.STATUS] == col.STATUS_ERROR
                writer.write(row)
                progress.update()
        writer.commit()
    log.info("wrote %s: %d rows, %d errors; image embeddings: %d from the cache, %d computed",
             output_path, len(rows), errors, scorer.reused, scorer.computed)
    return len(rows), errors
