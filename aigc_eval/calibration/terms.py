"""Which columns of result_total.csv hold each metric's 0..1 term, and the product measurements
that may join the fit as extra terms.

`term_columns()` and `definition_versions()` are the one place the calibration stage learns the
metric set: from the metric registry (aigc_eval/metrics/, issue 23) where it is installed, else
from the placeholder table below (today's CLIP/IS pair and the product term, version "1").
"""

from __future__ import annotations

from typing import Callable, Mapping

from aigc_eval.io.csv_io import finite_or_none
from aigc_eval import columns as col
from aigc_eval.product import names as pn

CLIP, INCEPTION, PRODUCT = "clip", "inception", "product"

# Each metric's definition version: a calibration made for another definition is refused.
# Placeholders ("1") until the registry carries versions.
DEFINITION_VERSIONS: dict[str, str] = {CLIP: "1", INCEPTION: "1", PRODUCT: "1"}

# Default weights of today's total (cli/support.py's --clip-weight, --is-weight, --product-weight).
DEFAULT_WEIGHTS: dict[str, float] = {CLIP: 0.6, INCEPTION: 0.4, PRODUCT: 0.5}


def _registered() -> dict | None:
    """The registry's metric classes by name, or None where the registry is not there yet."""
    try:
        from aigc_eval.metrics.registry import metric_classes
    except ImportError:  # a tree without the metric interface (issue 23)
        return None
    return metric_classes()


def term_columns() -> dict[str, str]:
    """Metric name -> the column of result_total.csv holding its 0..1 term (higher is better).
    Rows without a product check have an empty product_score. Metrics without a term, or whose
    term is lower-is-better (none today), are not fitted."""
    classes = _registered()
    if classes is None:
        return {CLIP: col.CLIP_NORM, INCEPTION: col.IS_NORM, PRODUCT: pn.PRODUCT_SCORE}
    return {name: cls.term.column for name, cls in classes.items() if cls.term is not None and cls.term.higher_is_better}


def definition_versions(metric_names: list[str] | tuple[str, ...]) -> dict[str, str]:
    """The definition version of each metric (the registry's; "1" where it does not know one)."""
    classes = _registered() or {}
    return {name: str(getattr(classes.get(name), "version", DEFINITION_VERSIONS.get(name, "1"))) for name in metric_names}


# Product measurements (result_product.csv columns) mapped to 0..1, higher better, named by the
# term they become. Each transform is stated: ΔE00 of 10 (a plainly different colour) maps to 1/2.
def _ssim_term(value: float) -> float:
    return min(max(value, 0.0), 1.0)


def _delta_e_term(value: float) -> float:
    return 1.0 / (1.0 + max(value, 0.0) / 10.0)


MEASUREMENT_TERMS: dict[str, tuple[str, Callable[[float], float]]] = {
    "masked_ssim": (pn.MASKED_SSIM, _ssim_term),
    "delta_e": (pn.DELTA_E_MEAN, _delta_e_term),
}
MEASUREMENT_VERSION = "1"


def measurement_terms(row: Mapping[str, object]) -> dict[str, float | None]:
    """The measurement terms of one product row (None where the measurement is empty or not finite)."""
    out: dict[str, float | None] = {}
    for name, (column, transform) in MEASUREMENT_TERMS.items():
        out[name] = transform(value) if (value := parse_term(row.get(column))) is not None else None
    return out


parse_term = finite_or_none  # one parser of number cells (io/csv_io.py)