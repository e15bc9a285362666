"""Inception Score of a batch of generated images, and each image's top-1 class and KL term.

Reads a CSV with one row per generated image (id, prompt, image URL or local path) and
writes result_is.csv (the input's id, prompt and image, then top1_class, top1_label,
top1_confidence, kl, status, error, then the input's other columns) and a JSON summary
beside it (result_is.json: inception_score_mean, inception_score_std, a 95% bootstrap
interval, num_images, splits, and a one-split IS per category when there is a category column).

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
from functools import partial
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision import transforms as T
from tqdm import tqdm

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import (
    read_rows,
    write_bytes_atomic,
    write_rows,
    write_text_atomic,
)
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
from aigc_eval.scoring.metrics import (
    DEFAULT_IS_SPLITS,
    IS_SHUFFLE_SEED,
    inception_score,
    inception_score_interval,
    per_image_kl,
)
from aigc_eval.scoring.model_lanes import ModelLanes, queued_ahead
from aigc_eval.scoring.model_loading import (
    Fp32StemInception,
    LazyModel,
    autocast,
    fold_batch_norms,
    inception_categories,
    inception_checkpoint_path,
    load_inception,
    resolve_device,
    resolve_precision,
)
from aigc_eval.scoring.runtime import RuntimeOptions
from aigc_eval.scoring.score_cache import ScoreCache, open_cache, weights_key

INCEPTION_SIZE = 299
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
BOOTSTRAP_RESAMPLES = 200
IS_RESULT_COLUMNS = [col.TOP1_CLASS, col.TOP1_LABEL, col.TOP1_CONFIDENCE, col.KL, col.STATUS, col.ERROR]


def inception_transform() -> T.Compose:
    """PIL RGB image -> normalised (3, 299, 299) tensor, the whole image resized without crop.

    The reference for InceptionScorer's split PixelTransform (and what the baseline uses).
    """
    return T.Compose([
        T.Resize((INCEPTION_SIZE, INCEPTION_SIZE), interpolation=T.InterpolationMode.BILINEAR, antialias=True),
        T.ToTensor(),
        T.Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD),
    ])


class InceptionScorer:
    """Inception-v3 logits for prepared rows, collected until the whole batch is known."""

    input_size = INCEPTION_SIZE

    def __init__(self, model: LazyModel, categories: Sequence[str], device: torch.device,
                 dtype: torch.dtype = torch.float32, cache: ScoreCache | None = None, model_key: str = "",
                 keep_pool: bool = False):
        self.model = model
        self.categories = list(categories)
        self.device = device
        self.dtype = dtype
        self.transform = PixelTransform(INCEPTION_SIZE, "bilinear", IMAGENET_MEAN, IMAGENET_STD)
        self.cache = cache if model_key else None
        self.model_key = f"{model_key}|{dtype}|{PREPROCESSING_VERSION}"
        self.rows: list[dict[str, str]] = []
        self.errors: list[str] = []
        self._logits: list[torch.Tensor] = []
        self.computed = self.reused = 0  # logits computed now / read from the score cache
        # With keep_pool each image's features are its logits followed by its 2048-d pool features
        # (one forward pass), cached as one vector under a kind of their own.
        self.keep_pool = keep_pool
        self.cache_kind = "inception_logits_pool" if keep_pool else "inception_logits"

    @classmethod
    def load(cls, weights_path: Path | None, device: torch.device, precision: str = "fp32",
             cache: ScoreCache | None = None, keep_pool: bool = False) -> "InceptionScorer":
        """Prepare the classifier (see model_loading.load_inception) on `device`: downloaded now
        when missing (or a WeightsMissingError), read from disk when first needed."""
        dtype = resolve_precision(precision, device)
        fp32_stem = precision == "auto" and dtype != torch.float32  # see model_loading.INCEPTION_FP32_STEM_END

        def load() -> torch.nn.Module:
            model = fold_batch_norms(load_inception(weights_path, device)[0]).to(memory_format=torch.channels_last)
            return Fp32StemInception(model, fp32_stem=fp32_stem)

        model = LazyModel(load)
        checkpoint = Path(weights_path).expanduser() if weights_path else inception_checkpoint_path()
        if not checkpoint.is_file():
            model.get()
        key = f"inception_v3:{weights_key(checkpoint)}" + ("|fp32-stem" if fp32_stem else "")
        return cls(model, inception_categories(), device, dtype, cache, key, keep_pool)

    def cached_features(self, digest: str) -> torch.Tensor | None:
        """This image's logits from the score cache, if an earlier run computed them."""
        return self.cache.get(self.cache_kind, self.model_key, digest) if self.cache else None

    @torch.inference_mode()
    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """Logits (N, classes) in float32 on the CPU for a batch of PixelTransform outputs; with
        keep_pool, (N, classes + 2048): the logits, then the pool features of the same pass."""
        # channels_last lets oneDNN and cuDNN run Inception's convolutions without layout changes.
        pixels = self.transform.normalise(pixels.to(self.device)).contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.dtype):
            logits, pool = self.model.get().features(pixels)
        return (torch.cat([logits, pool], dim=1) if self.keep_pool else logits).float().cpu()

    def split_features(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(logits, pool features or None) of one image's or a batch's features."""
        classes = len(self.categories)
        return (features[..., :classes], features[..., classes:]) if self.keep_pool else (features, None)

    def submit_batch(self, items: Sequence[PreparedRow], lanes: ModelLanes, slot: int = 0) -> Callable[[], None]:
        """Queue this batch's images in `lanes`, split across them, and return a function that
        waits for them and adds the batch (add_batch)."""
        logits = self.submit_logits(items, lanes, slot)
        return lambda: self.record(items, logits())

    def submit_logits(self, items: Sequence[PreparedRow], lanes: ModelLanes, slot: int = 0) -> Callable[[], list[torch.Tensor]]:
        """Queue this batch's images in `lanes`, split across them; the returned function waits
        for them and returns batch_logits."""
        inputs = pending_inputs(items, slot)
        logits = lanes.split(self.classify, inputs) if inputs is not None else None
        return lambda: self.batch_logits(items, slot, logits.result() if logits is not None else None)

    def add_batch(self, items: Sequence[PreparedRow], slot: int = 0, computed: torch.Tensor | None = None) -> None:
        """Classify the rows that have an image (or take `computed`, the logits of the batch's
        pending_inputs, when they were computed elsewhere); remember every row's outcome."""
        self.record(items, self.batch_logits(items, slot, computed))

    def batch_logits(self, items: Sequence[PreparedRow], slot: int = 0,
                     computed: torch.Tensor | None = None) -> list[torch.Tensor]:
        """The features (classify's output) of the batch's ok rows, in order: from the score
        cache, from `computed` (those of the batch's pending_inputs computed elsewhere) or
        classified now; new ones are written to the cache. split_features separates them."""
        logits, new = features_for(items, slot, self.classify, computed)
        self.computed, self.reused = self.computed + len(new), self.reused + len(logits) - len(new)
        if self.cache:
            self.cache.put_many(self.cache_kind, self.model_key, new)
        return logits

    def record(self, items: Sequence[PreparedRow], logits: Sequence[torch.Tensor]) -> None:
        """Remember a batch's rows and the logits of its ok rows, for results()."""
        self._logits.extend(self.split_features(features)[0] for features in logits)
        for item in items:
            self.rows.append(item.row)
            self.errors.append(item.error)

    def logits(self) -> torch.Tensor:
        """(ok rows, classes) logits in row order."""
        return torch.stack(self._logits) if self._logits else torch.empty(0, len(self.categories))

    def results(self, splits: int, category_col: str | None = None) -> tuple[list[dict[str, object]], dict[str, object]]:
        """Per-row result fields merged into each row, and the summary for result_is.json."""
        fields, summary = inception_summary(self.logits(), self.rows, self.errors, self.categories, splits, category_col)
        return [{**row, **f} for row, f in zip(self.rows, fields)], summary


def top1_fields(logits: torch.Tensor, categories: Sequence[str]) -> dict[str, object]:
    """top1_class, top1_label and top1_confidence (the largest softmax probability, float64) of
    one image's logits."""
    confidence, top1 = logits.double().softmax(dim=-1).max(dim=-1)
    cls = int(top1)
    return {col.TOP1_CLASS: cls, col.TOP1_LABEL: categories[cls], col.TOP1_CONFIDENCE: float(confidence)}


def _per_category(logits: torch.Tensor, rows: Sequence[dict[str, str]], errors: Sequence[str],
                  category_col: str | None) -> dict[str, dict[str, object]]:
    """One-split IS and image count of each category's ok rows (empty without a category column)."""
    if not category_col or not any(category_col in row for row in rows):
        return {}
    ok_rows = [row for row, error in zip(rows, errors) if not error]
    groups: dict[str, list[int]] = {}
    for index, row in enumerate(ok_rows):
        groups.setdefault(row.get(category_col, ""), []).append(index)
    return {
        name: {col.KEY_IS_MEAN: inception_score(logits[indices], splits=1)[0], col.KEY_NUM_IMAGES: len(indices)}
        for name, indices in groups.items()
    }


def inception_summary(logits: torch.Tensor, rows: Sequence[dict[str, str]], errors: Sequence[str],
                      categories: Sequence[str], splits: int, category_col: str | None = None,
                      ) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Each row's result fields (typed; top1 and KL against the mean prediction of all ok rows)
    and the run's summary (result_is.json) from the (ok rows, classes) `logits`, in row order;
    `errors[i]` is row i's image error ("" when it has logits)."""
    n = logits.shape[0]
    used_splits = splits if n >= splits else 1  # fewer images than splits: one split is the only meaningful IS
    summary: dict[str, object] = {
        col.KEY_IS_MEAN: None, col.KEY_IS_STD: None, col.KEY_IS_CI_LOW: None, col.KEY_IS_CI_HIGH: None,
        col.KEY_NUM_IMAGES: n, col.KEY_SPLITS: used_splits, col.KEY_NUM_CLASSES: len(categories),
        col.KEY_NUM_ERRORS: len(rows) - n, "shuffle_seed": IS_SHUFFLE_SEED,
        "bootstrap_resamples": BOOTSTRAP_RESAMPLES, "model": "torchvision inception_v3 IMAGENET1K_V1",
        col.KEY_WARNING: "", col.KEY_PER_CATEGORY: _per_category(logits, rows, errors, category_col),
    }
    if n:
        mean, std = inception_score(logits, splits=used_splits)
        summary.update({col.KEY_IS_MEAN: mean, col.KEY_IS_STD: std})
    if n >= 2:
        low, high = inception_score_interval(logits, splits=used_splits, resamples=BOOTSTRAP_RESAMPLES)
        summary.update({col.KEY_IS_CI_LOW: low, col.KEY_IS_CI_HIGH: high})
    if n < col.IS_MIN_STABLE_IMAGES:
        summary[col.KEY_WARNING] = (
            f"only {n} images scored: IS needs more than {col.IS_MIN_STABLE_IMAGES} to be stable"
            + (f"; splits reduced from {splits} to 1" if 0 < n < splits else "")
        )
    kl = per_image_kl(logits).tolist() if n else []
    out, k = [], 0
    for error in errors:
        if error:
            out.append({col.STATUS: col.STATUS_ERROR, col.ERROR: error})
        else:
            out.append({**top1_fields(logits[k], categories), col.KL: kl[k], col.STATUS: col.STATUS_OK, col.ERROR: ""})
            k += 1
    return out, summary


IS_FORMATS = {col.TOP1_CONFIDENCE: ".6f", col.KL: ".6f"}


def is_output_columns(header: Sequence[str], id_col: str, prompt_col: str, image_col: str) -> list[str]:
    """id, prompt, image, the IS result columns, then the input's remaining columns."""
    lead = [id_col, prompt_col, image_col]
    return lead + IS_RESULT_COLUMNS + [name for name in header if name not in lead + IS_RESULT_COLUMNS]


def summary_path_for(output_path: Path) -> Path:
    """result_is.csv -> result_is.json, beside it."""
    return Path(output_path).with_suffix(".json")


def write_is_outputs(
    scorer: InceptionScorer, header: Sequence[str], output_path: Path, splits: int,
    columns_: tuple[str, str, str], save_logits: Path | None, category_col: str | None = None,
) -> tuple[list[dict[str, object]], dict[str, object]]:
    """Write result_is.csv, result_is.json and optionally the logits .npy; return rows and summary."""
    rows, summary = scorer.results(splits, category_col)
    write_rows(output_path, is_output_columns(header, *columns_), rows, IS_FORMATS)
    write_text_atomic(summary_path_for(output_path), json.dumps(summary, ensure_ascii=False, indent=2) + "\n")
    if save_logits:
        buffer = io.BytesIO()
        np.save(buffer, scorer.logits().numpy())
        write_bytes_atomic(save_logits, buffer.getvalue())
    mean, std = summary[col.KEY_IS_MEAN], summary[col.KEY_IS_STD]
    log.info("wrote %s: IS %s over %d images; logits: %d from the cache, %d computed", output_path,
             f"{mean:.4f} ± {std:.4f}" if mean is not None else "n/a", summary[col.KEY_NUM_IMAGES],
             scorer.reused, scorer.computed)
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
    category_col: str | None = col.CATEGORY,
    runtime: RuntimeOptions | None = None,
) -> tuple[int, int]:
    """Score `input_path`, write result_is.csv and result_is.json; returns (rows, rows with errors)."""
    runtime = runtime or RuntimeOptions()
    if splits < 1:
        raise ValueError(f"--splits must be at least 1, got {splits}")
    header, rows = read_rows(input_path, [id_col, prompt_col, image_col])
    cache = open_cache(runtime.fetch.cache_dir)
    scorer = InceptionScorer.load(weights, resolve_device(runtime.device), runtime.precision, cache)
    prepared = prepare_rows(rows, image_col, [scorer], runtime.fetch, runtime.workers, Path(input_path).parent,
                            ahead=2 * runtime.batch_size)
    with ModelLanes(scorer.device) as lanes, \
            tqdm(total=len(rows), desc="Inception", unit="img", disable=runtime.quiet) as progress:
        prepared = warm_up_when_needed(prepared, [partial(lanes.warm_up, scorer.model.get)])
        for batch, _ in queued_ahead(batched(prepared, runtime.batch_size), partial(scorer.submit_batch, lanes=lanes)):
            progress.update(len(batch))
    out, summary = write_is_outputs(scorer, header, output_path, splits, (id_col, prompt_col, image_col), save_logits,
                                    category_col)
    return len(out), int(summary[col.KEY_NUM_ERRORS])
