"""Grown content on backgrounds made of the product's own colours (tests/product_cases_lookalike.py),
measured at the true placement, held at the levels measured when it was built (session 21):
copies 21 and reflections 21 of 24 caught, one benign paste of 48 over a bar (the astronaut on
brick in its colours: a vertical mortar line under the suit's vertical cord reads as its
reflection), straps 0 of 24 (docs/product_checks.md: what the checks still miss). The table
is printed."""

from __future__ import annotations

import warnings
from collections import Counter

import pytest

from aigc_eval.product.check import ProductThresholds
from aigc_eval.product.cutout import prepare_cutout
from aigc_eval.product.expansion import expansion_in, measuring_crop
from aigc_eval.product.placement import known_placement
from aigc_eval.product.reflection import reflection_in

import product_cases
from product_cases_lookalike import PRODUCTS, build_lookalike_cases


@pytest.fixture(scope="module")
def measured():
    """(case, product_expansion, product_reflection) per look-alike case."""
    products = product_cases.build_products()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        cases = build_lookalike_cases(products)
    cutouts = {name: prepare_cutout(products[name]) for name in PRODUCTS}
    out = []
    for case in cases:
        crop = measuring_crop(case.generated, cutouts[case.product],
                              known_placement(*case.truth).matrix)
        out.append((case, expansion_in(crop), reflection_in(crop)))
    return out


def test_grown_content_on_lookalike_backgrounds(measured, capsys):
    t = ProductThresholds()
    caught, total = Counter(), Counter()
    for case, expansion, reflection in measured:
        group = case.notes.get("variant", "benign")
        total[group] += 1
        caught[group] += bool(expansion > t.expansion_max or reflection > t.reflection_max)
    with capsys.disabled():
        print("\n\nGrown content on look-alike backgrounds (true placement; flagged by "
              "product_expansion or product_reflection):")
        for group in ("copy", "strap", "reflection", "benign"):
            print(f"  {group:10s} {caught[group]:3d}/{total[group]}")
    assert total == Counter(copy=24, strap=24, reflection=24, benign=48)
    assert caught["benign"] <= 1
    assert caught["copy"] >= 21
    assert caught["reflection"] >= 21
