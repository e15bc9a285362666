"""The silhouette of a textureless product (aigc_eval/product/silhouette.py): its R² against an
independent regression, analytic cases, the scale search, and over the frame's edge."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from scipy import ndimage
from sklearn.linear_model import LinearRegression
from sklearn.metrics import r2_score

import product_cases
from aigc_eval.product import geometry as geo
from aigc_eval.product import silhouette as sil
from aigc_eval.product.cutout import prepare_cutout


def _disc_cutout(radius: int = 50, colour=(200, 60, 40)) -> np.ndarray:
    size = 2 * radius + 8
    alpha = np.zeros((size, size), np.uint8)
    cv2.circle(alpha, (size // 2, size // 2), radius, 255, -1)
    rgb = np.zeros((size, size, 3), np.uint8)
    rgb[:] = colour
    return np.dstack([rgb, alpha])


def _crop_matrix(cut, scale: float, ox: float, oy: float) -> np.ndarray:
    """Cropped cut-out -> canvas px, for the original cut-out's top-left landing at (ox, oy)."""
    return geo.compose(geo.similarity(scale, 0.0, ox, oy),
                       geo.translation(cut.origin[0], cut.origin[1]))


def test_r2_is_the_variance_weighted_r2_of_regressing_colours_on_the_regions():
    """On a real photo with the bottle pasted in it and a placement 6 px off, with the product
    128 px long (the grid, no resampling), R² equals
    scikit-learn's variance-weighted R² of a regression of the four channels on the interior
    indicator, with the regions rebuilt by scipy's exact Euclidean distance transform."""
    cut = prepare_cutout(product_cases.smooth_bottle())
    h, w = cut.mask.shape
    image, _, (scale, ox, oy), _ = product_cases.paste(
        product_cases.background("rocket", 600, 600), product_cases.smooth_bottle(),
        128.0 / max(h, w), (300, 300))
    matrix = _crop_matrix(cut, scale, ox + 6, oy - 4)
    got = sil.silhouette_at(image, cut, matrix)

    placed = cv2.warpAffine(cut.mask.astype(np.float32), matrix, image.shape[1::-1],
                            flags=cv2.INTER_AREA) >= 0.5
    inside = ndimage.distance_transform_edt(placed) > 1
    outside = ndimage.distance_transform_edt(~placed)
    ring = (outside > 1) & (outside <= 1 + sil.RING_FRACTION * 128)
    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
    light = lab[..., 0]
    mean = ndimage.uniform_filter(light, 3, mode="reflect")
    spread = np.sqrt(np.maximum(ndimage.uniform_filter(light * light, 3, mode="reflect")
                                - mean * mean, 0.0))
    values = np.dstack([lab, sil.TEXTURE_WEIGHT * spread])
    both = inside | ring
    x = inside[both].astype(np.float64)[:, None]
    y = values[both]
    fitted = LinearRegression().fit(x, y).predict(x)
    expected = r2_score(y, fitted, multioutput="variance_weighted")
    assert 0.05 < expected < 0.95  # a real, partial contrast
    assert got == pytest.approx(expected, abs=2e-3)


def test_a_uniform_disc_on_a_uniform_background_has_r2_near_1_and_a_placement_inside_it_0():
    disc = _disc_cutout()
    cut = prepare_cutout(disc)
    canvas = np.full((400, 400, 3), (40, 120, 200), np.uint8)
    image, _, (scale, ox, oy), _ = product_cases.paste(canvas, disc, 1.0, (200, 200))
    assert sil.silhouette_at(image, cut, _crop_matrix(cut, scale, ox, oy)) > 0.95
    # Its interior and its ring both on the disc: nothing tells them apart.
    inner = _crop_matrix(cut, 0.5 * scale, ox + 0.25 * disc.shape[1], oy + 0.25 * disc.shape[0])
    assert sil.silhouette_at(image, cut, inner) < 0.02


@pytest.mark.parametrize("bg", ["studio", "hubble", "gravel"])
def test_the_search_finds_the_size_and_place_from_a_start_too_small_and_off(bg):
    bottle = product_cases.smooth_bottle()
    cut = prepare_cutout(bottle)
    canvas = product_cases.background(bg, 800, 800)
    image, _, (scale, ox, oy), _ = product_cases.paste(canvas, bottle, 1.3, (400, 400))
    image = product_cases.encode(image, "jpg90")
    truth = _crop_matrix(cut, scale, ox, oy)
    start = _crop_matrix(cut, 0.85 * scale, ox + 25, oy + 40)
    fit = sil.silhouette_fit(image, cut, start)
    assert geo.decompose(fit.matrix_crop)[0] == pytest.approx(scale, rel=0.02)
    centre = np.array([cut.mask.shape[1] / 2.0, cut.mask.shape[0] / 2.0, 1.0])
    size = scale * max(cut.mask.shape)
    assert np.linalg.norm(fit.matrix_crop @ centre - truth @ centre) < 0.02 * size
    assert fit.r2 == pytest.approx(sil.silhouette_at(image, cut, truth), abs=0.05)
    assert fit.r2 > sil.silhouette_at(image, cut, start) + 0.1


def test_over_the_frame_edge_only_the_part_inside_counts():
    """A disc pushed 30 % out of the frame: measured on what is inside, its silhouette is as
    clear as in the frame; the frame's own edge is no outline (nothing outside is compared)."""
    disc = _disc_cutout()
    cut = prepare_cutout(disc)
    canvas = np.full((300, 300, 3), (40, 120, 200), np.uint8)
    image, _, (scale, ox, oy), outside = product_cases.paste(canvas, disc, 1.0, (12, 150))
    assert outside > 0.25
    assert sil.silhouette_at(image, cut, _crop_matrix(cut, scale, ox, oy)) > 0.95


def test_textured_share_tells_a_textureless_cutout_from_photographs(products):
    assert sil.textured_share(prepare_cutout(product_cases.smooth_bottle())) == 0.0
    assert sil.textured_share(prepare_cutout(_disc_cutout())) == 0.0
    for name in ("cup", "astronaut", "cat", "retina"):
        assert sil.textured_share(prepare_cutout(products[name])) > 2 * sil.TEXTURED_SHARE_MIN


@pytest.fixture(scope="module")
def products():
    return product_cases.build_products()
