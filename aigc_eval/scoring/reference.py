"""Comparing generated images with a reference set of real product photos: FID, KID and CMMD,
overall and per category (`main.py --input generated.csv --reference reference.csv`).

The features cost no extra model work: Inception's 2048-d pool features come from the forward
pass that gives the logits, and CMMD uses the Chinese-CLIP image embeddings CLIPScore computes.
Reference images go through the same fetch path and the same scoring core, so their features
land in the score cache and a second run against the same reference computes nothing for it.
The maths is in scoring/distribution.py; this module gathers features, writes
result_distribution.json and, with --save-features, the features as .npy files.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from aigc_eval import columns as col
from aigc_eval import log
from aigc_eval.io.csv_io import (
    InputError,
    read_rows,
    write_bytes_atomic,
    write_text_atomic,
)
from aigc_eval.scoring.core import ScoredRow, ScoringCore
from aigc_eval.scoring.distribution import (
    BACKBONE_CLIP,
    BACKBONE_INCEPTION,
    KEY_OVERALL,
    compare_by_category,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
KEY_GENERATED = "generated"
KEY_REFERENCE = "reference"
KEY_COMPARISONS = "comparisons"
KEY_DEFINITIONS = "definitions"
KEY_ERRORS = "image_errors"
DEFINITIONS = {
    "fid": "Frechet distance of torchvision Inception-v3 (IMAGENET1K_V1) 2048-d pool features, as torch-fidelity "
           "computes it; comparable across runs of this tool, not with FIDs on TensorFlow's Inception",
    "kid": "kernel inception distance on the same features, torch-fidelity's estimator (cubic polynomial kernel, "
           "100 subsets of min(1000, both sizes) images, seed 2020): mean and std over subsets",
    "cmmd": "MMD^2 of L2-normalised Chinese-CLIP image embeddings with a Gaussian RBF kernel (sigma 10), x 1000, "
            "the biased estimator of the CMMD paper's reference code",
}


@dataclass
class FeatureSet:
    """The features of one side's ok images, with their ids and categories, in order."""

    ids: list[str] = field(default_factory=list)
    categories: list[str] = field(default_factory=list)
    pool: list[np.ndarray] = field(default_factory=list)
    clip: list[np.ndarray] = field(default_factory=list)
    errors: int = 0
    id_col: str = col.ID
    category_col: str = col.CATEGORY

    def add(self, scored: Iterable[ScoredRow]) -> None:
        """Keep each scored row's features; a row whose image failed only counts as an error."""
        for item in scored:
            if item.pool is None or item.clip_embedding is None:
                self.errors += 1
                continue
            self.ids.append(item.row.get(self.id_col, ""))
            self.categories.append(item.row.get(self.category_col, ""))
            self.pool.append(item.pool.double().numpy())
            self.clip.append(item.clip_embedding.double().numpy())

    def arrays(self) -> dict[str, np.ndarray]:
        """{backbone: (images, dims)} for scoring/distribution.py."""
        return {BACKBONE_INCEPTION: np.stack(self.pool) if self.pool else np.zeros((0, 2048)),
                BACKBONE_CLIP: np.stack(self.clip) if self.clip else np.zeros((0, 1))}


def read_reference(path: Path, id_col: str, image_col: str, category_col: str) -> tuple[list[dict[str, str]], Path]:
    """The reference images as rows (id, image, category) and the folder relative paths start from.

    A CSV needs the image column (the id and category columns are optional); a folder gives
    every image file below it, its category the name of its subfolder (none at the top level).
    InputError when there is no image."""
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
        rows = [{id_col: str(p.relative_to(path)), image_col: str(p),
                 category_col: p.parent.name if p.parent != path else ""} for p in files]
        base = path
    else:
        _, rows = read_rows(path, [image_col])
        for index, row in enumerate(rows):
            row.setdefault(id_col, f"ref-{index}")
            row[id_col] = row[id_col] or f"ref-{index}"
        base = path.parent
    if not rows:
        raise InputError(f"{path}: the reference has no images; give a CSV with a {image_col} column or a folder of images")
    return rows, base


def reference_features(core: ScoringCore, rows: Sequence[dict[str, str]], image_col: str, base_dir: Path,
                       id_col: str, category_col: str) -> FeatureSet:
    """Features of the reference images, through the core (fetch path, score cache, lanes)."""
    features = FeatureSet(id_col=id_col, category_col=category_col)
    # No prompt column: only the images are embedded (CLIPScore itself is not wanted here).
    for _, scored in core.score(core.prepare(rows, image_col, base_dir), prompt_col="\0no prompt"):
        features.add(scored)
    log.info("reference: %d images, %d could not be used", len(features.ids), features.errors)
    return features


def compare_sets(generated: FeatureSet, reference: FeatureSet) -> dict[str, object]:
    """result_distribution.json's content: definitions, sizes and the comparisons."""
    if len(reference.ids) < 2:
        raise InputError(f"the reference has {len(reference.ids)} usable images; at least 2 are needed")
    comparisons = compare_by_category(generated.arrays(), generated.categories, reference.arrays(),
                                      reference.categories) if len(generated.ids) >= 2 else {
        KEY_OVERALL: {"warning": f"only {len(generated.ids)} generated images were scored; at least 2 are needed"}}
    return {KEY_DEFINITIONS: DEFINITIONS, KEY_GENERATED: {"images": len(generated.ids), KEY_ERRORS: generated.errors},
            KEY_REFERENCE: {"images": len(reference.ids), KEY_ERRORS: reference.errors},
            KEY_COMPARISONS: comparisons}


def write_distribution(path: Path, result: dict[str, object]) -> None:
    """result_distribution.json, atomically."""
    write_text_atomic(path, json.dumps(result, ensure_ascii=False, indent=2, default=float) + "\n")


def save_features(folder: Path, generated: FeatureSet, reference: FeatureSet) -> None:
    """<side>_<backbone>.npy (float32, one row per image) and <side>_ids.json for both sides."""
    folder.mkdir(parents=True, exist_ok=True)
    for side, features in ((KEY_GENERATED, generated), (KEY_REFERENCE, reference)):
        for backbone, array in features.arrays().items():
            buffer = _npy_bytes(array.astype(np.float32))
            write_bytes_atomic(folder / f"{side}_{backbone}.npy", buffer)
        write_text_atomic(folder / f"{side}_ids.json", json.dumps(
            {"ids": features.ids, "categories": features.categories}, ensure_ascii=False) + "\n")


def _npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


def format_distribution(result: dict[str, object]) -> str:
    """The comparisons as a few lines for stderr."""
    lines = ["distance to the reference (FID, KID mean ± std, CMMD; n generated / reference):"]
    for name, entry in result[KEY_COMPARISONS].items():  # type: ignore[union-attr]
        def num(key: str, digits: int = 3) -> str:
            value = entry.get(key)
            return "n/a" if value is None else f"{value:.{digits}f}"
        lines.append(f"  {name}: FID {num('fid')}, KID {num('kid_mean', 4)} ± {num('kid_std', 4)}, CMMD {num('cmmd')} "
                     f"({entry.get('n_generated', 0)} / {entry.get('n_reference', 0)})"
                     + (f"; warning: {entry['warning']}" if entry.get("warning") else ""))
    return "\n".join(lines)
