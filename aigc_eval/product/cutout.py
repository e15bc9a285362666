"""Turn the merchant's cut-out into (RGB, mask), cropped to the product.

A cut-out normally carries the product's mask in its alpha channel. One without transparency
(no alpha, or alpha opaque everywhere) is accepted when its background is near-uniform and
touches the border (a studio shot on white, a product on black): that background is segmented by
colour distance in CIELAB from the border's median colour, keeping only the near-background
regions connected to the border. Anything else raises `ProductInputError`."""

from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from . import geometry as geo

ALPHA_THRESHOLD = 128          # alpha >= this is product (half-transparent rims count half-way)
MIN_PRODUCT_PIXELS = 400       # about 20x20 px: smaller masks cannot be compared meaningfully
BACKGROUND_TOLERANCE = 12.0    # CIE76 distance in Lab from the border colour still "background"
BORDER_UNIFORM_SHARE = 0.90    # this share of border pixels must be within the tolerance


class ProductInputError(ValueError):
    """The merchant's cut-out cannot be used (no usable mask)."""


@dataclass(frozen=True)
class Cutout:
    """A cut-out cropped to its mask's bounding box.

    rgb: (h, w, 3) uint8; mask: (h, w) bool; origin: (x0, y0) of the crop in the original
    cut-out; source_size: (width, height) of the original; touches_border: per side
    (left, top, right, bottom), whether the product mask reaches the original cut-out's own
    frame, i.e. the merchant's photo already cut the product there. `cache` keeps work that
    depends on the cut-out alone (its keypoints) across the generated images checked
    against it."""

    rgb: np.ndarray
    mask: np.ndarray
    origin: tuple[int, int]
    source_size: tuple[int, int]
    touches_border: tuple[bool, bool, bool, bool]
    cache: dict = field(default_factory=dict, compare=False, repr=False)

    @property
    def cut_at_source(self) -> bool:
        """True when the product was already cut off by the cut-out's own frame."""
        return any(self.touches_border)

    def shrunk(self, factor: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(RGB, mask as 0/255 uint8, cut-out -> shrunk 2x3 mapping) resized by `factor` with
        geometry.resize_by (a pyramid; unchanged when factor >= 1). The last size asked for is
        kept: the ECC refinement and the comparison ask for the same one, and so do all the
        images that show this product at least as large as the comparison size. The arrays are
        shared: read them, never write them."""
        height, width = self.mask.shape
        size = (max(1, round(width * factor)), max(1, round(height * factor)))
        known = self.cache.get("shrunk")
        if known is not None and known[0] == size:
            return known[1]
        mask = self.mask.astype(np.uint8) * 255
        if factor >= 1.0 or size == (width, height):
            shrunk = (self.rgb, mask, geo.resize_matrix(1.0, 1.0))
        else:
            rgb, mapping = geo.resize_to(self.rgb, size)
            shrunk = (rgb, geo.resize_to(mask, size)[0], mapping)
        self.cache["shrunk"] = (size, shrunk)
        return shrunk


def _as_uint8_image(image: np.ndarray, name: str) -> np.ndarray:
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim != 3 or array.shape[2] not in (3, 4):
        raise ProductInputError(
            f"{name} must be a uint8 (h, w, 3) RGB or (h, w, 4) RGBA array, got "
            f"{array.dtype} {array.shape}")
    return array


def background_mask(rgb: np.ndarray, tolerance: float = BACKGROUND_TOLERANCE,
                    uniform_share: float = BORDER_UNIFORM_SHARE) -> np.ndarray:
    """Near-uniform background touching the border, as a bool mask.

    Definition: take the median Lab colour of the one-pixel border; if fewer than
    `uniform_share` of border pixels lie within `tolerance` (CIE76 ΔE) of it, the background is
    not uniform and ProductInputError is raised. Otherwise background = pixels within the
    tolerance that are 8-connected to the border."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    # OpenCV's 8-bit Lab stores L*255/100 and a,b offset by 128; undo the L scaling only.
    lab[..., 0] *= 100.0 / 255.0
    border = np.concatenate([lab[0], lab[-1], lab[1:-1, 0], lab[1:-1, -1]])
    reference = np.median(border, axis=0)
    border_close = np.linalg.norm(border - reference, axis=1) <= tolerance
    if border_close.mean() < uniform_share:
        raise ProductInputError(
            "cut-out has no transparency and no uniform background to segment "
            f"(only {border_close.mean():.0%} of its border is one colour)")
    near = (np.linalg.norm(lab - reference, axis=2) <= tolerance).astype(np.uint8)
    count, labels = cv2.connectedComponents(near, connectivity=8)
    edge_labels = np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]]))
    edge_labels = edge_labels[edge_labels != 0]
    return np.isin(labels, edge_labels)


def product_mask(cutout: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Split a cut-out into (RGB, bool mask) without cropping; see the module docstring."""
    image = np.ascontiguousarray(_as_uint8_image(cutout, "cut-out"))
    rgb = cv2.cvtColor(image, cv2.COLOR_RGBA2RGB) if image.shape[2] == 4 else image
    if image.shape[2] == 4 and (image[..., 3] < 255).any():
        mask = image[..., 3] >= ALPHA_THRESHOLD
    else:
        mask = ~background_mask(rgb)
        # A one-pixel speckle of JPEG noise is not product; opening removes it.
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_OPEN, kernel).astype(bool)
    if int(mask.sum()) < MIN_PRODUCT_PIXELS:
        raise ProductInputError(
            f"cut-out mask is empty or too small ({int(mask.sum())} product pixels, "
            f"need at least {MIN_PRODUCT_PIXELS})")
    return rgb, mask


def prepare_cutout(cutout: np.ndarray) -> Cutout:
    """Mask the cut-out, crop it to the mask's bounding box and note where it touches its frame.

    Pixels outside the mask are filled with the product's mean colour so that resampling near
    the outline does not drag in whatever the transparent area happened to contain."""
    rgb, mask = product_mask(cutout)
    height, width = mask.shape
    mask8 = mask.view(np.uint8)
    x0, y0, w, h = cv2.boundingRect(mask8)
    x1, y1 = x0 + w, y0 + h
    touches = (x0 == 0, y0 == 0, x1 == width, y1 == height)
    crop_rgb = rgb[y0:y1, x0:x1].copy()
    crop_mask = mask[y0:y1, x0:x1].copy()
    # cv2.mean: the same mean as numpy's over the masked pixels, without gathering them.
    mean = np.round(cv2.mean(crop_rgb, mask8[y0:y1, x0:x1])[:3]).astype(np.uint8)
    crop_rgb[~crop_mask] = mean
    return Cutout(rgb=crop_rgb, mask=crop_mask, origin=(x0, y0), source_size=(width, height),
                  touches_border=touches)
