"""The product stage's I/O: the cut-out fetched through the images' fetch path and cache, each
generated image checked against it in the worker threads, and the rows of result_product.csv.

A row's result is `status` ok with the measurements, `skipped` when the row names no cut-out,
or `error` with the reason (cut-out 404, not an image, no transparency and no uniform
background, ...). A product error never touches the row's CLIPScore or IS.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.io.image_fetch import (
    FetchConfig,
    ImageError,
    decode_image,
    fetch_image_with_digest,
    image_size,
)

from . import names as n
from .check import ProductThresholds, check_product, crop_box
from .composition import PROFILES, Profile
from .cutout import Cutout, ProductInputError, prepare_cutout
from .placement import Placement, known_placement

# Generated images are decoded down to no less than this on their shorter side (JPEG DCT scaling,
# whole-factor reduction otherwise): the search works at <= 512 px and the comparison at <= 384 px,
# so larger decodes only cost time (768 gave the same issues on the benchmark's images, 25% slower).
PRODUCT_DECODE_SIZE = 512
CUTOUT_CACHE_SIZE = 64  # prepared cut-outs kept per run: a product usually has several generated images
RESULT_COLUMNS = [*n.PRODUCT_COLUMNS, n.PRODUCT_CROP_BOX, col.STATUS, col.ERROR]
CUTOUT_KEY = "_cutout"  # not a column: the prepared Cutout, for metrics that build on the check


@dataclass(frozen=True)
class ProductOptions:
    """What the product stage checks and how: the cut-out column, the profile and the thresholds."""

    product_col: str = col.PRODUCT_IMAGE_URL
    profile: str = "default"
    thresholds: ProductThresholds = field(default_factory=ProductThresholds)

    def __post_init__(self) -> None:
        if self.profile not in PROFILES:
            raise ValueError(f"--profile must be one of {', '.join(PROFILES)}, got {self.profile!r}")

    @property
    def composition_profile(self) -> Profile:
        return PROFILES[self.profile]


def product_output_columns(header: list[str], id_col: str, prompt_col: str, image_col: str) -> list[str]:
    """id, prompt, image, the product columns, status, error, then the input's other columns."""
    lead = [id_col, prompt_col, image_col] + RESULT_COLUMNS
    return lead + [name for name in header if name not in lead]


def _known_placement(row: dict[str, str], factor: float) -> Placement | None:
    """A placement fixed by the generation request (the input's product_scale, product_offset_x
    and product_offset_y, in canvas pixels), in the decoded image's pixels; None when absent."""
    cells = [row.get(name, "").strip() for name in (n.PRODUCT_SCALE, n.PRODUCT_OFFSET_X, n.PRODUCT_OFFSET_Y)]
    if not all(cells):
        return None
    try:
        scale, offset_x, offset_y = (float(cell) for cell in cells)
    except ValueError:
        raise ProductInputError(f"known placement {cells} is not three numbers (scale, offset x, offset y)") from None
    if not scale > 0:
        raise ProductInputError(f"known placement scale must be positive, got {scale}")
    return known_placement(scale * factor, offset_x * factor, offset_y * factor)


class ProductChecker:
    """The product check as the image pipeline's per-row check (see image_pipeline.RowCheck).

    Thread-safe: worker threads share the bounded cache of prepared cut-outs, keyed by the
    cut-out's content digest (its download is cached by the fetch path's own cache)."""

    decode_size = PRODUCT_DECODE_SIZE

    def __init__(self, options: ProductOptions, fetch: FetchConfig, base_dir: Path | None = None):
        # The checks already run one per worker thread beside the model lanes: OpenCV's own thread
        # pool on top would only fight them for the cores.
        cv2.setNumThreads(1)
        self.options = options
        self.fetch = fetch
        self.base_dir = base_dir
        self._cutouts: OrderedDict[str, Cutout | ProductInputError] = OrderedDict()
        self._lock = threading.Lock()

    def cutout(self, source: str, session: Any) -> Cutout:
        """The prepared cut-out at `source`; ImageError or ProductInputError with the reason."""
        data, digest = fetch_image_with_digest(source, self.fetch, session, self.base_dir)
        with self._lock:
            known = self._cutouts.get(digest)
            if known is not None:
                self._cutouts.move_to_end(digest)
        if known is None:
            try:
                known = prepare_cutout(np.asarray(decode_image(data, self.fetch.max_pixels, keep_alpha=True)))
            except ProductInputError as exc:
                known = exc
            with self._lock:
                self._cutouts[digest] = known
                while len(self._cutouts) > CUTOUT_CACHE_SIZE:
                    self._cutouts.popitem(last=False)
        if isinstance(known, ProductInputError):
            raise known
        return known

    def __call__(self, row: dict[str, str], image: Image.Image, data: bytes, session: Any) -> dict[str, object]:
        """Result columns for one generated image (decoded as `image`, from the bytes `data`)."""
        source = row.get(self.options.product_col, "").strip()
        if not source:
            return self._status(col.STATUS_SKIPPED, f"no cut-out ({self.options.product_col} is empty)")
        try:
            cut = self.cutout(source, session)
            canvas = image_size(data)
            factor = image.width / canvas[0]
            # The image the pipeline decoded for the models (always RGB): no second decode or copy.
            rgb = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
            result = check_product(rgb, cut, thresholds=self.options.thresholds,
                                   profile=self.options.composition_profile,
                                   placement=_known_placement(row, factor), canvas_size=canvas)
        except ImageError as exc:
            return self._status(col.STATUS_ERROR, f"cut-out {source}: {exc}")
        except ProductInputError as exc:
            return self._status(col.STATUS_ERROR, f"cut-out {source}: {exc}")
        box = crop_box(result.placement, cut.source_size, canvas)
        return {**result.as_row(), n.PRODUCT_CROP_BOX: " ".join(map(str, box)) if box else "",
                col.STATUS: col.STATUS_OK, col.ERROR: "", CUTOUT_KEY: cut}

    def failed(self, reason: str) -> dict[str, object]:
        """The result for a row whose generated image could not be fetched or decoded."""
        return self._status(col.STATUS_ERROR, reason)

    @staticmethod
    def _status(status: str, reason: str) -> dict[str, object]:
        return {**{name: "" for name in RESULT_COLUMNS}, col.STATUS: status, col.ERROR: reason}
