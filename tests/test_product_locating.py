"""The template path's "found" rule and its placements over the frame's edge: tile agreement
on analytic cases, no product found where none is (the tuned products on the tuned
backgrounds), and products cut off by the frame placed where they are."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from aigc_eval.product import geometry as geo
from aigc_eval.product import names
from aigc_eval.product.check import check_product
from aigc_eval.product.comparison import tile_agreement
from aigc_eval.product.composition import PROFILES
from aigc_eval.product.cutout import prepare_cutout
from aigc_eval.product.locate import locate
from aigc_eval.product.placement import near, placement_ambiguity, placement_of

import product_cases

IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


@pytest.fixture(scope="module")
def products():
    return product_cases.build_products()


def _textured(h: int, w: int) -> np.ndarray:
    """A crop of scikit-image's gravel photo (CC0, grey levels) as the template."""
    gray = product_cases.background("gravel", w, h)[..., 1]
    return np.ascontiguousarray(gray)


def test_placement_ambiguity_is_the_best_clearly_different_rival_over_the_winner():
    """A 100 x 200 px product placed at scale 1: a rival 5 % larger at the same centre is the
    same placement (near); one 20 % larger, or moved by 30 px (15 % of its size), is a rival."""
    rgba = np.zeros((120, 220, 4), np.uint8)
    rgba[10:110, 10:210] = (200, 120, 40, 255)
    cut = prepare_cutout(rgba)
    assert cut.mask.shape == (100, 200)

    def placed(scale, dx, confidence):
        # Scaled about the product's centre (100, 50 in the cropped cut-out), then moved.
        matrix = geo.compose(geo.translation(400 + dx, 300),
                             geo.similarity(scale, 0.0, 0.0, 0.0), geo.translation(-100, -50))
        return matrix, placement_of(matrix, cut, confidence, 0.0, "template", True)

    best_matrix, best = placed(1.0, 0, 0.8)
    same = placed(1.05, 0, 0.79)
    larger, moved = placed(1.2, 0, 0.6), placed(1.0, 30, 0.4)
    assert near(same[0], best_matrix, cut)
    assert not near(larger[0], best_matrix, cut) and not near(moved[0], best_matrix, cut)
    assert placement_ambiguity(best, [best, same[1]], cut) == 0.0
    assert placement_ambiguity(best, [best, same[1], larger[1], moved[1]], cut) == \
        pytest.approx(0.6 / 0.8)


def test_tile_agreement_is_the_share_of_tiles_that_still_match():
    """192x192 template, grid 6: 32 px tiles, 36 of them. Compared with itself every tile
    matches; with the grey levels of whole tiles inverted (correlation -1 there), exactly the
    others do; on a crop shifted by a tile's width (unrelated texture), few do."""
    templ = _textured(192, 192)
    mask = np.full(templ.shape, 255, np.uint8)
    assert tile_agreement(templ, mask, templ.astype(np.float32), IDENTITY) == (1.0, 36, 36)
    damaged = templ.copy()
    damaged[:, :64] = 255 - damaged[:, :64]         # two of six tile columns
    damaged[160:, 64:] = 255 - damaged[160:, 64:]   # and four tiles of the last row
    assert tile_agreement(templ, mask, damaged.astype(np.float32), IDENTITY) == \
        (pytest.approx((36 - 12 - 4) / 36), 20, 36)
    shifted = np.roll(templ, 48, axis=1).astype(np.float32)
    assert tile_agreement(templ, mask, shifted, IDENTITY)[0] < 0.2


def test_tile_agreement_judges_only_textured_product_tiles():
    """Tiles outside the mask, or flat ones, are not judged; a thin product still has tiles
    (no wider than half its short side); nothing judged gives 0."""
    templ = _textured(192, 192)
    mask = np.zeros(templ.shape, np.uint8)
    mask[:, :96] = 255
    damaged = templ.copy()
    damaged[:, 96:] = 255 - damaged[:, 96:]  # outside the mask: not compared
    assert tile_agreement(templ, mask, damaged.astype(np.float32), IDENTITY) == (1.0, 18, 18)
    flat = np.full((192, 192), 128, np.uint8)
    full = np.full(flat.shape, 255, np.uint8)
    assert tile_agreement(flat, full, flat.astype(np.float32), IDENTITY) == (0.0, 0, 0)
    thin = _textured(192, 14)
    thin_mask = np.full(thin.shape, 255, np.uint8)
    half = thin.copy()
    half[:98] = 255 - half[:98]  # 7 px tiles: 14 of the 27 rows of two
    assert tile_agreement(thin, thin_mask, half.astype(np.float32), IDENTITY) == \
        (pytest.approx(13 / 27), 26, 54)


NAMES = (*product_cases.PRODUCT_NAMES, "cat_sym")


def _absent_cases():
    """Each tuned product on each tuned background, without it: the frame empty, or holding
    another tuned product (not its look-alike), on the five canvas sizes (48 cases)."""
    for i, name in enumerate(NAMES):
        for j, bg in enumerate(product_cases.BACKGROUNDS):
            yield pytest.param(i, j, name, bg, id=f"{name}-{bg}")


@pytest.mark.parametrize(("i", "j", "name", "bg"), list(_absent_cases()))
def test_the_template_path_finds_no_product_where_none_is(products, i, j, name, bg):
    """The template path alone (what runs when features fail, as they do on an absent
    product). Before tile agreement, 6 of these 48 were "found": 5 through the outline
    support (0.50-0.77 on brick, grass, a studio gradient) and 1 at a correlation of 0.81
    (a small retina template on the Hubble field, inside the frame: 3 of its 19 judged tiles
    match; until session 17 tiles were not asked of such placements)."""
    canvas = product_cases.CANVASES[(i + j) % len(product_cases.CANVASES)]
    if (i + j) % 2 == 0:
        image = product_cases.background(bg, *canvas)
    else:
        other = NAMES[(i + j) % len(NAMES)]
        if other == name or {other, name} <= {"cup", "cup_ellipse"} or {other, name} <= {"cat", "cat_sym"}:
            other = "retina" if name != "retina" else "astronaut"
        centre = ((0.5, 0.5), (0.8, 0.5), (0.5, 0.2), (0.25, 0.75))[j % 4]
        image, _, _, _ = product_cases._place(products, other, "absx", i + j, 0.6, centre,
                                              canvas=canvas, bg=bg)
    placement = locate(product_cases.encode(image, "jpg90"), prepare_cutout(products[name]),
                       method="template")
    assert not placement.found, placement


@pytest.mark.parametrize("bg", ["rocket", "ihc", "brick"])
def test_a_textureless_product_is_not_found_where_none_is(bg):
    """A textureless product's template correlates with any smooth gradient (0.82-0.94) and its
    few tiles all match there; its silhouette (silhouette.py) is not there. Session 18's dev set
    of such bottles on the eight tuned backgrounds without them: 13 of 24 "found" by the
    template path, 1 of 24 with the silhouette (session 19). These three empty frames were
    among the 13."""
    image = product_cases.background(bg, 900, 900)
    bottle = prepare_cutout(product_cases.smooth_bottle())
    placement = locate(product_cases.encode(image, "jpg90"), bottle, method="template")
    assert not placement.found, placement


@pytest.mark.parametrize("bg", [
    "studio", "hubble",
    pytest.param("rocket", marks=pytest.mark.xfail(strict=True, reason=(
        "known miss (docs/product_checks.md, textureless products): the ring outside the true "
        "outline lies on a varied background (R² 0.67 there), 8 % smaller it scores 0.74")))])
def test_a_textureless_product_is_placed_at_its_scale(bg):
    """The same bottle, present: the interior-only correlation is as high for a smaller
    placement inside it (the template path put it 11 % too small on the studio gradient, 2-30 %
    on the dev set); its silhouette pins its size."""
    bottle = product_cases.smooth_bottle()
    canvas = product_cases.background(bg, 800, 800)
    generated, _, (s, ox, oy), _ = product_cases.paste(canvas, bottle, 1.5, (400, 420))
    placement = locate(product_cases.encode(generated, "jpg90"), prepare_cutout(bottle),
                       method="template")
    assert placement.found and placement.silhouette > 0.6
    assert placement.scale == pytest.approx(s, rel=0.03)
    size = s * max(bottle.shape[:2])
    assert abs(placement.offset_x - ox) < 0.02 * size and abs(placement.offset_y - oy) < 0.02 * size


def test_a_recoloured_textureless_product_is_found_and_named():
    """A strong warm cast (mean CIEDE2000 >= 11) on the bottle: its colours no longer agree, its
    shading and silhouette do, so it is found, and recoloured."""
    bottle = product_cases.smooth_bottle()
    canvas = product_cases.background("gravel", 800, 800)
    generated, alpha, _, _ = product_cases.paste(canvas, bottle, 1.2, (380, 400))
    cast, _ = product_cases.colour_cast(generated, alpha, 9, 15, min_delta_e=11.0)
    row = check_product(product_cases.encode(cast, "jpg90"), prepare_cutout(bottle),
                        profile=PROFILES["default"]).as_row()
    assert row[names.PRODUCT_FOUND] and row[names.MATCH_METHOD] == "template"
    assert names.PRODUCT_RECOLOURED in row[names.PRODUCT_ISSUES].split(";")
    assert row[names.SILHOUETTE_CONTRAST] > 0.15


@pytest.mark.parametrize("name", ["retina", "cup_ellipse", "cat_sym"])
def test_a_product_cut_off_by_the_frame_is_placed_where_it_is(products, name):
    """Pushed 22 % out of the frame, the (near-)symmetric products are placed by the template
    path at their true place and size (before: shrunk inside the frame, or elsewhere), and
    the check names the cut-off."""
    image, _, (scale, ox, oy), outside = product_cases._place(
        products, name, "cutx", 3, 0.7, (0.78, 0.5), min_outside=0.22)
    generated = product_cases.encode(image, "jpg90")
    cut = prepare_cutout(products[name])
    placement = locate(generated, cut, method="template")
    size = scale * max(cut.mask.shape)
    assert placement.found and placement.scale == pytest.approx(scale, rel=0.02)
    assert abs(placement.offset_x - ox) <= 0.02 * size and abs(placement.offset_y - oy) <= 0.02 * size
    row = check_product(generated, cut, profile=PROFILES["default"]).as_row()
    assert row[names.CUT_OFF_SHARE] == pytest.approx(outside, abs=0.03)
    assert names.PRODUCT_CUT_OFF in row[names.PRODUCT_ISSUES].split(";")
