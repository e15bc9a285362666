"""2x3 affine helpers shared by locate and fidelity.

Convention: pixel centres sit at integer coordinates (as in cv2.warpAffine), so resizing an image
by factors (fx, fy) maps x to (x + 0.5) * fx - 0.5, which is what cv2.resize samples."""

from __future__ import annotations

import math

import cv2
import numpy as np


def to3(matrix: np.ndarray) -> np.ndarray:
    """2x3 -> 3x3 homogeneous."""
    out = np.empty((3, 3))  # a check composes dozens of these: cheaper than np.vstack
    out[:2] = matrix
    out[2] = (0.0, 0.0, 1.0)
    return out


def compose(*matrices: np.ndarray) -> np.ndarray:
    """compose(A, B, C) = A @ B @ C as a 2x3 (C applied first)."""
    out = to3(matrices[0])
    for matrix in matrices[1:]:
        out = out @ to3(matrix)
    return out[:2]


def invert(matrix: np.ndarray) -> np.ndarray:
    """Inverse of a 2x3 affine."""
    return cv2.invertAffineTransform(np.asarray(matrix, dtype=np.float64))


def translation(tx: float, ty: float) -> np.ndarray:
    return np.array([[1.0, 0.0, tx], [0.0, 1.0, ty]])


def resize_matrix(fx: float, fy: float) -> np.ndarray:
    """Coordinates before a cv2.resize by (fx, fy) -> coordinates after it."""
    return np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])


def similarity(scale: float, rotation_deg: float, tx: float, ty: float) -> np.ndarray:
    """Scale, counter-clockwise rotation (as displayed, cv2.getRotationMatrix2D's sign), shift."""
    c = scale * math.cos(math.radians(rotation_deg))
    s = scale * math.sin(math.radians(rotation_deg))
    return np.array([[c, s, tx], [-s, c, ty]])


def decompose(matrix: np.ndarray) -> tuple[float, float]:
    """(scale, rotation_deg) of a similarity; for a general affine, those of its nearest
    similarity (the mean of the two singular values' rotation-consistent part)."""
    a, b = matrix[0, 0], matrix[0, 1]
    c, d = matrix[1, 0], matrix[1, 1]
    p, q = (a + d) / 2.0, (b - c) / 2.0
    return float(math.hypot(p, q)), float(math.degrees(math.atan2(q, p)))


def nearest_similarity(matrix: np.ndarray, centre: tuple[float, float]) -> np.ndarray:
    """The similarity closest (Frobenius) to an affine's linear part, mapping `centre` where the
    affine maps it, so the product's middle stays put when a stretch is projected out."""
    scale, rotation = decompose(matrix)
    sim = similarity(scale, rotation, 0.0, 0.0)
    point = np.array([centre[0], centre[1], 1.0])
    target = matrix @ point
    sim[:, 2] = target - sim[:, :2] @ point[:2]
    return sim


def stretch(matrix: np.ndarray) -> float:
    """Anisotropy of an affine: largest / smallest singular value of its 2x2 part, minus 1.
    0 for a similarity; 0.15 for a 15 % stretch along one axis."""
    singular = np.linalg.svd(np.asarray(matrix, dtype=np.float64)[:, :2], compute_uv=False)
    if singular[1] <= 1e-12:
        return float("inf")
    return float(singular[0] / singular[1] - 1.0)


def resize_to_long_side(image: np.ndarray, long_side: float,
                        interpolation: int = cv2.INTER_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Shrink (never enlarge) so the long side is at most `long_side`; returns the image and the
    2x3 mapping old -> new coordinates."""
    height, width = image.shape[:2]
    factor = min(1.0, long_side / max(height, width))
    if factor >= 1.0:
        return image, resize_matrix(1.0, 1.0)
    return resize_by(image, factor, interpolation)


def resize_by(image: np.ndarray, factor: float,
              interpolation: int = cv2.INTER_AREA) -> tuple[np.ndarray, np.ndarray]:
    """Resize by `factor` (rounded to whole pixels); returns the image and the exact mapping.
    Shrinking with INTER_AREA goes through `resize_to` (a pyramid), which is as free of aliasing
    and several times faster than OpenCV's INTER_AREA at non-integer factors."""
    height, width = image.shape[:2]
    new_w, new_h = max(1, round(width * factor)), max(1, round(height * factor))
    if (new_w, new_h) == (width, height):
        return image, resize_matrix(1.0, 1.0)
    if interpolation == cv2.INTER_AREA:
        if factor < 1.0:
            return resize_to(image, (new_w, new_h))
        interpolation = cv2.INTER_LINEAR
    out = cv2.resize(image, (new_w, new_h), interpolation=interpolation)
    return out, resize_matrix(new_w / width, new_h / height)


def resize_to(image: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Shrink to (width, height): cv2.pyrDown while the image is at least twice the target (each
    halving maps x to x / 2), then INTER_LINEAR for the last factor (between 1/2 and 1).
    Images of one size shrunk to one size get the same mapping, so masks stay registered."""
    matrix = np.eye(3)
    out = image
    width, height = size
    while out.shape[1] >= 2 * width and out.shape[0] >= 2 * height:
        out = cv2.pyrDown(out)
        matrix = np.diag([0.5, 0.5, 1.0]) @ matrix
    if out.shape[1] != width or out.shape[0] != height:
        fx, fy = width / out.shape[1], height / out.shape[0]
        out = cv2.resize(out, (width, height), interpolation=cv2.INTER_LINEAR)
        matrix = to3(resize_matrix(fx, fy)) @ matrix
    return out, matrix[:2]


def padded_box(matrix: np.ndarray, size: tuple[int, int], margin: float,
               image_shape: tuple[int, ...]) -> tuple[int, int, int, int] | None:
    """(x0, y0, x1, y1), end-exclusive, of a (w, h) = `size` frame mapped by the 2x3 or 3x3
    `matrix`, grown by `margin` pixels on every side and clipped to an image of `image_shape`;
    None when less than 8 pixels are left on a side."""
    w, h = size
    corners = np.array([[0, 0, 1], [w, 0, 1], [0, h, 1], [w, h, 1]], dtype=np.float64)
    mapped = corners @ to3(matrix)[:2].T
    height, width = image_shape[:2]
    x0 = int(max(0, math.floor(mapped[:, 0].min() - margin)))
    y0 = int(max(0, math.floor(mapped[:, 1].min() - margin)))
    x1 = int(min(width, math.ceil(mapped[:, 0].max() + margin)))
    y1 = int(min(height, math.ceil(mapped[:, 1].max() + margin)))
    return (x0, y0, x1, y1) if x1 - x0 >= 8 and y1 - y0 >= 8 else None
