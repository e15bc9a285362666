"""Thin, smooth products (tests/product_cases_thin.py): turned pastes placed at their scale, and the
chance finds where they are absent, held at the levels measured when the set was built
(session 21, placements raised in session 22; docs/product_checks.md, thin, low-texture
products). The table is printed."""

from __future__ import annotations

import cv2
import pytest

from aigc_eval.product import locate, one_colour, template_search
from aigc_eval.product.check import check_product
from aigc_eval.product.cutout import prepare_cutout

from product_cases_thin import build_thin_cases, build_thin_cut_off_cases, build_thin_products


@pytest.fixture(scope="module")
def thin_products():
    return build_thin_products()


@pytest.fixture(scope="module")
def thin(thin_products):
    cutouts = {name: prepare_cutout(image) for name, image in thin_products.items()}
    return cutouts, build_thin_cases(thin_products)


def _placed_right(case, placement) -> bool:
    """Found within 5 % of the true scale and 3 degrees of the true turn."""
    return (placement.found and abs(placement.scale / case.truth[0] - 1) < 0.05
            and abs(placement.rotation_deg - case.notes["turn"]) < 3.0)


def _run(cutouts, cases):
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        return [(case, check_product(case.generated, cutouts[case.product])) for case in cases]
    finally:
        cv2.setNumThreads(threads)


def test_thin_products_are_placed_at_their_scale(thin, capsys, monkeypatch):
    cutouts, cases = thin
    turned = [case for case in cases if case.kind == "rotated"]
    results = _run(cutouts, turned)
    placed = [case.name for case, result in results if _placed_right(case, result.placement)]
    clean = [case.name for case, result in results if not result.issues]
    with capsys.disabled():
        print(f"\n\nThin products turned by {sorted({c.notes['turn'] for c in turned})} deg: "
              f"placed right {len(placed)}/{len(turned)}, no issue {len(clean)}/{len(turned)}")
        for case, result in results:
            if case.name not in placed:
                p = result.placement
                print(f"  misplaced {case.name}: scale {p.scale:.3f} (true {case.truth[0]:.3f}), "
                      f"turn {p.rotation_deg:+.1f}, {';'.join(result.issues) or 'no issue'}")
    assert len(placed) >= 17
    assert set(clean) <= set(placed)  # a misplaced product never passes clean
    # Without the strong-silhouette placement of one-colour products (session 22), two of the
    # unturned pastes on studio walls are placed on a part of themselves.
    unturned = [case for case in turned if case.notes["turn"] == 0.0]
    monkeypatch.setattr(locate, "ONE_COLOUR_MIN_CORRELATION", float("inf"))
    without = [case for case, result in _run(cutouts, unturned)
               if _placed_right(case, result.placement)]
    monkeypatch.undo()
    with capsys.disabled():
        print(f"  unturned, without the one-colour silhouette: placed right "
              f"{len(without)}/{len(unturned)} (with it "
              f"{sum(case.name in placed for case in unturned)})")
    assert len(without) <= sum(case.name in placed for case in unturned) - 2
    # Without the turned search about the best weak silhouette, two turned by 7 deg are not.
    seven = [case for case in turned if abs(case.notes["turn"]) == 7.0]
    monkeypatch.setattr(one_colour, "TURNS", ())
    unturned_only = [case for case, result in _run(cutouts, seven)
                     if _placed_right(case, result.placement)]
    monkeypatch.undo()
    with capsys.disabled():
        print(f"  turned by 7 deg, without the turned silhouette search: placed right "
              f"{len(unturned_only)}/{len(seven)} (with it {sum(c.name in placed for c in seven)})")
    assert len(unturned_only) <= sum(case.name in placed for case in seven) - 2
    # One peak per size third, as before session 21, places far fewer of them.
    monkeypatch.setattr(template_search, "PEAKS_PER_THIRD", 1)
    before = [case for case, result in _run(cutouts, turned) if _placed_right(case, result.placement)]
    with capsys.disabled():
        print(f"  with one peak per size third: placed right {len(before)}/{len(turned)}")
    assert len(before) <= len(placed) - 5


def test_thin_products_absent_are_mostly_not_found(thin, capsys):
    cutouts, cases = thin
    absent = [case for case in cases if case.kind == "absent"]
    found = [case.name for case, result in _run(cutouts, absent) if result.placement.found]
    with capsys.disabled():
        print(f"\n\nThin products absent: found by chance {len(found)}/{len(absent)}: {found}")
    assert len(found) <= 5  # a known weakness: a smooth decal correlates with smooth spots


def test_thin_products_cut_off_by_the_frame_are_named(thin, thin_products, capsys, monkeypatch):
    """Their legs below the frame's edge, 20-26 % of their area: a template hanging 30 % of its
    size over the edge (FRAME_PAD until session 22) reaches few of them (and 16 of the 24 were
    then product_not_found, measured when the set was built)."""
    cutouts, _ = thin
    cases = build_thin_cut_off_cases(thin_products)

    def named(results):
        return [case.name for case, result in results if "product_cut_off" in result.issues]

    results = _run(cutouts, cases)
    not_found = [case.name for case, result in results if not result.placement.found]
    monkeypatch.setattr(template_search, "FRAME_PAD", 0.3)
    before = named(_run(cutouts, cases))
    with capsys.disabled():
        print(f"\n\nThin products cut off by the frame: product_cut_off {len(named(results))}/"
              f"{len(cases)} (with FRAME_PAD 0.3: {len(before)}), not found {len(not_found)}")
    assert len(cases) == 24
    assert len(named(results)) >= 11
    assert len(not_found) <= 4
    assert len(before) <= len(named(results)) - 5
