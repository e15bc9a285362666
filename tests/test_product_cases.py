"""The product checks over the case set built from real photographs (tests/product_cases.py and
the fresh set-aside part, tests/product_cases_fresh.py): no issue on any must-pass case of the
tuned part, the right issue on (at least 95 % of) its must-flag cases, the set-aside parts at
their measured levels, and the confusion tables printed for docs/product_checks.md."""

from __future__ import annotations

import statistics
import time
import warnings
from collections import Counter, defaultdict

import cv2
import pytest

from aigc_eval.product import names
from aigc_eval.product.check import check_product
from aigc_eval.product.composition import PROFILES
from aigc_eval.product.cutout import prepare_cutout

import product_cases
import product_cases_fresh
from product_cases_fresh import FRESH


@pytest.fixture(scope="session")
def products():
    return {**product_cases.build_products(), **product_cases_fresh.build_fresh_products()}


@pytest.fixture(scope="session")
def cutouts(products):
    return {name: prepare_cutout(image) for name, image in products.items()}


@pytest.fixture(scope="session")
def cases(products):
    with warnings.catch_warnings():  # lab2rgb clips the out-of-gamut part of the casts
        warnings.simplefilter("ignore")
        return [*product_cases.build_cases(products),
                *product_cases_fresh.build_fresh_cases(products)]


@pytest.fixture(scope="session")
def results(cases, cutouts):
    """(case, row, seconds) per case, each check timed on one OpenCV thread."""
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        out = []
        for case in cases:
            start = time.process_time()
            result = check_product(case.generated, cutouts[case.product],
                                   profile=PROFILES[case.profile])
            out.append((case, result.as_row(), time.process_time() - start))
        return out
    finally:
        cv2.setNumThreads(threads)


def _issues(row) -> list[str]:
    return [code for code in row[names.PRODUCT_ISSUES].split(";") if code]


def confusion_table(results, part: str | None = None) -> str:
    """Rows: case kind (expected issue); columns: issue codes found; cells: case counts; only
    the cases of `part` (product_cases.TUNED or HELD_OUT) when given."""
    counts: dict[str, Counter] = defaultdict(Counter)
    totals: Counter = Counter()
    for case, row, _ in results:
        if part is not None and case.part != part:
            continue
        totals[case.kind] += 1
        issues = _issues(row)
        counts[case.kind].update(issues if issues else ["(none)"])
    columns = ["(none)", *names.ISSUE_CODES]
    short = {code: code.replace("product_", "") for code in columns}
    head = f"{'kind (expected)':42s} {'n':>3s} " + " ".join(f"{short[c]:>11s}" for c in columns)
    lines = [head, "-" * len(head)]
    for kind, expected in product_cases.KINDS.items():
        if not totals[kind]:
            continue
        label = f"{kind} ({expected or 'no issue'})"
        cells = " ".join(f"{counts[kind][c] or '.':>11}" for c in columns)
        lines.append(f"{label:42s} {totals[kind]:>3d} {cells}")
    return "\n".join(lines)


def test_case_set_is_big_and_varied(cases):
    assert len(cases) >= 200
    held_out = [case for case in cases if case.part == product_cases.HELD_OUT]
    assert len(held_out) >= 90
    # The set-aside part shares no product and no background photo with the tuned part.
    tuned_products = {case.product for case in cases if case.part == product_cases.TUNED}
    assert not tuned_products & {case.product for case in held_out}
    # The fresh part: products that neither other part has (measured once, after the rest).
    fresh = [case for case in cases if case.part == FRESH]
    assert len(fresh) >= 90
    assert not {case.product for case in fresh} & {case.product for case in cases
                                                   if case.part != FRESH}
    per_kind = Counter(case.kind for case in cases)
    # Three mirror-symmetric products (cat_sym tuned, coin_sym and pagoda_sym set aside), one
    # case each.
    assert all(count >= 3 for kind, count in per_kind.items()
               if kind != "mirrored_symmetric"), per_kind
    assert per_kind["mirrored_symmetric"] == 3
    assert len({case.product for case in cases}) >= 4


def _rates(results, part: str) -> dict[str, object]:
    """Must-pass cases with an issue, must-flag cases caught / missed / reported not found."""
    rows = [(case, row) for case, row, _ in results if case.part == part]
    flag = [(case, row) for case, row in rows if case.expected is not None]
    return dict(
        false_alarms=[(case.name, row[names.PRODUCT_ISSUES]) for case, row in rows
                      if case.expected is None and _issues(row)],
        flag=flag,
        caught=[case.name for case, row in flag if case.expected in _issues(row)],
        missed=[(case.name, row[names.PRODUCT_ISSUES]) for case, row in flag
                if case.expected not in _issues(row)],
        not_found=[case.name for case, row in flag if case.kind != "absent"
                   and names.PRODUCT_NOT_FOUND in _issues(row)],
        new_kinds=[(case, row) for case, row in flag if case.kind in ("grown", "mirrored")],
        grown=[case.name for case, row in flag if case.kind == "grown"],
        grown_caught=[case.name for case, row in flag if case.kind == "grown"
                      and case.expected in _issues(row)])


def test_confusion_table(results, capsys):
    times = [seconds for _, _, seconds in results]
    with capsys.disabled():
        for part in (product_cases.TUNED, product_cases.HELD_OUT, FRESH):
            subset = [item for item in results if item[0].part == part]
            rates = _rates(results, part)
            print(f"\n\nProduct checks, {part} part: {len(subset)} cases (rows: case kind; "
                  "columns: issues found)\n" + confusion_table(results, part))
            print(f"must-flag caught {len(rates['caught'])}/{len(rates['flag'])}; must-pass "
                  f"with an issue {len(rates['false_alarms'])}; damaged reported not found "
                  f"{len(rates['not_found'])}; grown+mirrored caught "
                  f"{sum(c.expected in _issues(r) for c, r in rates['new_kinds'])}"
                  f"/{len(rates['new_kinds'])}")
            print(f"grown content caught {len(rates['grown_caught'])}/{len(rates['grown'])}")
            print("missed:", rates["missed"], "\nfalse alarms:", rates["false_alarms"])
        print(f"check_product CPU time per image: median {statistics.median(times) * 1000:.0f} ms,"
              f" max {max(times) * 1000:.0f} ms (one OpenCV thread)\n")
    # The tuned part: what the thresholds were set on; grown content 17 of its 18 cases.
    tuned = _rates(results, product_cases.TUNED)
    assert not tuned["false_alarms"], tuned["false_alarms"]
    flag = [name for name in tuned["caught"] if not name.startswith("grown/")]
    assert len(flag) >= 0.95 * (len(tuned["flag"]) - len(tuned["grown"])), tuned["missed"]
    assert not tuned["not_found"], tuned["not_found"]
    assert len(tuned["grown_caught"]) >= 0.94 * len(tuned["grown"]), tuned["missed"]
    # The set-aside parts: no threshold was tuned on them, and the issue's targets (no issue on
    # benign cases, >= 97 % caught, no damaged product "not found", grown content >= 90 %) are
    # NOT all met; these bars are the levels measured (docs/product_checks.md), so a regression
    # fails. held_out was looked at while the measures were built; fresh was measured once.
    held = _rates(results, product_cases.HELD_OUT)
    assert not held["false_alarms"], held["false_alarms"]
    held_flag = [name for name in held["caught"] if "/grown/" not in name]
    assert len(held_flag) >= 0.97 * (len(held["flag"]) - len(held["grown"])), held["missed"]
    assert not held["not_found"], held["not_found"]
    assert len(held["grown_caught"]) >= 0.85 * len(held["grown"]), held["missed"]
    # The fresh part as first measured: 2 false alarms, 59/60, 1 not found; these bars hold it
    # at the levels after the changes made since (docs/product_checks.md).
    fresh = _rates(results, FRESH)
    assert not fresh["false_alarms"], fresh["false_alarms"]
    fresh_flag = [name for name in fresh["caught"] if "/grown/" not in name]
    assert len(fresh_flag) >= 0.97 * (len(fresh["flag"]) - len(fresh["grown"])), fresh["missed"]
    assert not fresh["not_found"], fresh["not_found"]
    assert len(fresh["grown_caught"]) >= 0.8 * len(fresh["grown"]), fresh["missed"]


GEOMETRY_EDITS = ("stretched", "painted_over", "outline_painted")  # the truth no longer holds
CONTENT_EDITS = ("hue_rotated", "colour_cast", "blurred", "strong_cast", "heavy_paint",
                 "grown")  # harder to match, same geometry


def test_known_pastes_are_located_within_two_pixels(results):
    """Within 1 % scale and 2 px (plus 1 % of a 600 px product for the scale error at the
    cut-out's top-left corner) on every unedited product; recoloured or blurred products, when
    found, within 3 % and 8 px (the ΔE-10 cast on the smooth retina on grass is the loosest)."""
    checked = 0
    for case, row, _ in results:
        if case.truth is None or case.kind in GEOMETRY_EDITS or case.part != product_cases.TUNED:
            continue
        edited = case.kind in CONTENT_EDITS
        if edited and not row[names.PRODUCT_FOUND]:
            continue  # a missed must-flag case is counted by the confusion table's test
        scale, offset_x, offset_y = case.truth
        assert row[names.PRODUCT_FOUND], case.name
        assert row[names.PRODUCT_SCALE] == pytest.approx(scale, rel=0.03 if edited else 0.01), \
            case.name
        tolerance = (8.0 if edited else 2.0) + 0.01 * scale * 600
        assert abs(row[names.PRODUCT_OFFSET_X] - offset_x) <= tolerance, case.name
        assert abs(row[names.PRODUCT_OFFSET_Y] - offset_y) <= tolerance, case.name
        checked += 1 - edited
    assert checked >= 40


def test_rows_have_every_column_and_known_codes(results):
    for case, row, _ in results:
        assert list(row) == list(names.PRODUCT_COLUMNS)
        assert set(_issues(row)) <= set(names.ISSUE_CODES)
        assert 0.0 <= row[names.PRODUCT_SCORE] <= 1.0
        if case.expected is None and case.part == product_cases.TUNED:
            assert row[names.PRODUCT_SCORE] > 0.3, case.name
        if case.kind == "absent":
            assert row[names.PRODUCT_SCORE] == 0.0
