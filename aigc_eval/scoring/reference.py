"""Comparing generated images with a reference set of real product photos: FID, KID and CMMD,
overall and per category (`main.py --input generated.csv --reference reference.csv`).

The features cost no extra model work: Inception's 2048-d pool features come from the forward
pass that gives the logits, and CMMD uses the Chinese-CLIP image embeddings CLIPScore computes.
With --fid-features torch-fidelity, FID and KID use torch-fidelity's TF-compatible Inception
instead (scoring/fid_features.py), run in a second pass over the images that scored.
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
from aigc_eval.scoring.fid_features import (
    DEFAULT_FID_FEATURES,
    FidelityInception,
    FidFeatures,
    fid_features_named,
)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
KEY_GENERATED = "generated"
KEY_REFERENCE = "reference"
KEY_COMPARISONS = "comparisons"
KEY_DEFINITIONS = "definitions"
KEY_ERRORS = "image_errors"
KEY_FID_FEATURES = "fid_features"  # {"name", "backbone", "extractor"}: what FID and KID were computed on


def definitions(choice: FidFeatures) -> dict[str, str]:
    """The definition of each number in result_distribution.json, naming FID's features."""
    return {
        "fid": f"Frechet distance, as torch-fidelity computes it, of {choice.description}",
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
    rows: list[dict[str, str]] = field(default_factory=list)  # the ok rows, for a second pass (attach)
    extra: dict[str, list[np.ndarray]] = field(default_factory=dict)  # other backbones' features, by name
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
            self.rows.append(item.row)

    def attach(self, backbone: str, vectors: Sequence[object]) -> None:
        """Add a backbone's features, one per row kept so far (None where that image failed in
        the second pass: the row is then dropped from every backbone, so the rows stay aligned)."""
        if len(vectors) != len(self.rows):
            raise ValueError(f"{backbone}: {len(vectors)} feature rows for {len(self.rows)} images")
        keep = [i for i, vector in enumerate(vectors) if vector is not None]
        if len(keep) < len(vectors):
            log.warning("warning: %d images could not be read again for %s features and are left out",
                        len(vectors) - len(keep), backbone)
            self.errors += len(vectors) - len(keep)
            for name in ("ids", "categories", "pool", "clip", "rows"):
                setattr(self, name, [getattr(self, name)[i] for i in keep])
            self.extra = {b: [v[i] for i in keep] for b, v in self.extra.items()}
        self.extra[backbone] = [np.asarray(vectors[i], dtype=np.float64) for i in keep]

    def arrays(self) -> dict[str, np.ndarray]:
        """{backbone: (images, dims)} for scoring/distribution.py."""
        return {BACKBONE_INCEPTION: np.stack(self.pool) if self.pool else np.zeros((0, 2048)),
                BACKBONE_CLIP: np.stack(self.clip) if self.clip else np.zeros((0, 1)),
                **{b: np.stack(v) if v else np.zeros((0, 2048)) for b, v in self.extra.items()}}


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
    for _, scored in core.score(core.prepare(rows, image_col, base_dir, checks=False), prompt_col="\0no prompt"):
        features.add(scored)
    log.info("reference: %d images, %d could not be used", len(features.ids), features.errors)
    return features


def attach_fid_features(extractor: FidelityInception | None, core: ScoringCore, image_col: str,
                        sides: Sequence[tuple[FeatureSet, Path | None]]) -> None:
    """Run `extractor` (None: nothing to do) over the images of each side's rows, read from
    its folder (fetch path, score cache, lanes), and attach its features under its backbone."""
    if extractor is None:
        return
    runtime = core.runtime
    for features, base_dir in sides:
        vectors = extractor.features(features.rows, image_col, base_dir, runtime.fetch, core.lanes,
                                     workers=runtime.workers, batch_size=runtime.batch_size, quiet=runtime.quiet,
                                     total=len(features.rows), desc="torch-fidelity Inception")
        features.attach(extractor.kind, vectors)
    log.info("torch-fidelity Inception features: %d from the cache, %d computed", extractor.reused, extractor.computed)


def compare_sets(generated: FeatureSet, reference: FeatureSet,
                 fid_features: str = DEFAULT_FID_FEATURES) -> dict[str, object]:
    """result_distribution.json's content: definitions, FID's features, sizes and the comparisons."""
    choice = fid_features_named(fid_features)
    if len(reference.ids) < 2:
        raise InputError(f"the reference has {len(reference.ids)} usable images; at least 2 are needed")
    if len(generated.ids) >= 2:
        comparisons = compare_by_category(generated.arrays(), generated.categories, reference.arrays(),
                                          reference.categories, fid_backbone=choice.backbone)
    else:
        comparisons = {KEY_OVERALL: {
            "warning": f"only {len(generated.ids)} generated images were scored; at least 2 are needed"}}
    return {KEY_DEFINITIONS: definitions(choice),
            KEY_FID_FEATURES: {"name": choice.name, "backbone": choice.backbone, "extractor": choice.description},
            KEY_GENERATED: {"images": len(generated.ids), KEY_ERRORS: generated.errors},
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
    fid_on = (result.get(KEY_FID_FEATURES) or {}).get("name", DEFAULT_FID_FEATURES)  # type: ignore[union-attr]
    lines = [f"distance to the reference (FID and KID mean ± std on {fid_on} Inception features, CMMD; "
             "n generated / reference):"]
    for name, entry in result[KEY_COMPARISONS].items():  # type: ignore[union-attr]
        def num(key: str, digits: int = 3) -> str:
            value = entry.get(key)
            return "n/a" if value is None else f"{value:.{digits}f}"
        lines.append(f"  {name}: FID {num('fid')}, KID {num('kid_mean', 4)} ± {num('kid_std', 4)}, CMMD {num('cmmd')} "
                     f"({entry.get('n_generated', 0)} / {entry.get('n_reference', 0)})"
                     + (f"; warning: {entry['warning']}" if entry.get("warning") else ""))
    return "\n".join(lines)
