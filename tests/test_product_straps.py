"""A development set for straps and handles (part "straps"; thresholds may be tried on it, it is
not set aside): each tuned product (tests/product_cases.py) on each of the tuned part's eight
backgrounds, with a strap grown over its top (product_cases.grow_outside) and two benign pastes
(plain, and with a soft shadow): 48 straps and 96 benign cases, JPEG 90, measured at the true
placement. Held at the levels measured when it was built (session 22): straps 37 of 48 caught
(25 by the structure test alone, before the enclosure rule), no benign paste over a bar. The
table is printed."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest

from aigc_eval.product import expansion as expansion_module
from aigc_eval.product.check import ProductThresholds
from aigc_eval.product.cutout import prepare_cutout
from aigc_eval.product.expansion import expansion_in, measuring_crop
from aigc_eval.product.placement import known_placement
from aigc_eval.product.reflection import reflection_in

import product_cases as pc

PRODUCTS = (*pc.PRODUCT_NAMES, "cat_sym")


@pytest.fixture(scope="module")
def crops():
    """(group, measuring crop) per case: group "strap" or "benign"."""
    products = pc.build_products()
    out = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, name in enumerate(PRODUCTS):
            cut = prepare_cutout(products[name])
            canvas = pc.CANVASES[i % len(pc.CANVASES)]
            for bg in pc.BACKGROUNDS:
                base = pc.background(bg, *canvas)
                image, alpha, truth, _ = pc.place_on(base, products[name], 0.5)
                strap, _ = pc.grow_outside(image, alpha, "strap")
                plain = pc.place_on(base, products[name], 0.55, (0.48, 0.52))
                shadow = pc.place_on(base, products[name], 0.6, shadow=True)
                for group, generated, placed in (("strap", strap, truth),
                                                 ("benign", plain[0], plain[2]),
                                                 ("benign", shadow[0], shadow[2])):
                    crop = measuring_crop(pc.encode(generated, "jpg90"), cut,
                                          known_placement(*placed).matrix)
                    out.append((group, crop))
    return out


def _caught(crops) -> tuple[Counter, Counter]:
    t = ProductThresholds()
    caught, total = Counter(), Counter()
    for group, crop in crops:
        total[group] += 1
        caught[group] += bool(expansion_in(crop) > t.expansion_max
                              or reflection_in(crop) > t.reflection_max)
    return caught, total


def test_straps_on_the_tuned_backgrounds(crops, capsys, monkeypatch):
    caught, total = _caught(crops)
    monkeypatch.setattr(expansion_module, "ENCLOSED_MIN", float("inf"))
    by_structure, _ = _caught(crops)
    with capsys.disabled():
        print("\n\nStraps on the tuned backgrounds (true placement; flagged by product_expansion "
              "or product_reflection):")
        print(f"  strap   {caught['strap']:3d}/{total['strap']} "
              f"(structure test alone {by_structure['strap']})")
        print(f"  benign  {caught['benign']:3d}/{total['benign']}")
    assert total == Counter(strap=48, benign=96)
    assert caught["benign"] == 0
    assert caught["strap"] >= 37
    assert by_structure["strap"] < caught["strap"]
