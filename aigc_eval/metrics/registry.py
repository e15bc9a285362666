"""The registered metrics: the four built in, and any that installed packages add through the
entry-point group `aigc_eval.metrics` (docs/metrics.md shows a plugin). `create_metrics(names,
setup)` is the whole public surface; choices on the command line come from `metric_classes()`.
"""

from __future__ import annotations

import importlib.metadata
import logging
from functools import lru_cache
from typing import Iterable, Mapping, Sequence

from aigc_eval.metrics.base import Metric
from aigc_eval.metrics.clip import ClipMetric
from aigc_eval.metrics.inception import InceptionMetric
from aigc_eval.metrics.product import ProductMetric
from aigc_eval.metrics.product_clip import ProductClipMetric
from aigc_eval.metrics.setup import MetricSetup

ENTRY_POINT_GROUP = "aigc_eval.metrics"
BUILTIN: dict[str, type[Metric]] = {m.name: m for m in (ClipMetric, InceptionMetric, ProductMetric, ProductClipMetric)}
# What a lightweight run picks: no weights, no GPU.
LIGHTWEIGHT = ("product",)
log = logging.getLogger("aigc_eval")


@lru_cache(maxsize=1)
def metric_classes() -> dict[str, type[Metric]]:
    """Every metric by name: the built-in ones in their order, then the plugins' by name. A
    plugin that fails to import or reuses a name is left out with a warning."""
    found = dict(BUILTIN)
    for entry in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        try:
            cls = entry.load()
        except Exception as exc:  # a broken plugin must not stop the pipeline
            log.warning("metric plugin %s (%s) cannot be loaded: %s: %s", entry.name, entry.value, type(exc).__name__, exc)
            continue
        if not (isinstance(cls, type) and issubclass(cls, Metric)) or getattr(cls, "name", None) != entry.name:
            log.warning("metric plugin %s (%s) is not a Metric subclass named %r; left out", entry.name, entry.value,
                        entry.name)
            continue
        if entry.name in BUILTIN:
            log.warning("metric plugin %s (%s) reuses a built-in name; left out", entry.name, entry.value)
            continue
        found[entry.name] = cls
    return found


def default_metric_names(flagged: Iterable[str] = ()) -> list[str]:
    """The metrics a run without --metrics runs: every registered one that is `on_by_default`,
    and those of `flagged` (the metrics a --weight or --threshold flag names) that are not
    (product metrics run only when the input names a cut-out)."""
    chosen = set(flagged)
    return [name for name, cls in metric_classes().items() if cls.on_by_default or name in chosen]


def flagged_metrics(weights: Mapping[str, float], thresholds: Mapping[str, object]) -> set[str]:
    """The metrics that --weight NAME=W (W > 0) and --threshold NAME.RULE=V (V not off) use."""
    named = {name for name, weight in weights.items() if weight}
    return named | {key.partition(".")[0] for key, value in thresholds.items()
                    if str(value) not in ("off", "None")}


def parse_metric_names(text: str | None, flagged: Iterable[str] = ()) -> list[str]:
    """--metrics clip,inception,product -> the names, checked; None gives the default set (with
    the opt-in metrics in `flagged`)."""
    if text is None:
        return default_metric_names(flagged)
    names = [part.strip() for part in text.split(",") if part.strip()]
    known = metric_classes()
    unknown = [name for name in names if name not in known]
    if unknown or not names:
        raise ValueError(f"--metrics {text!r}: unknown metric(s) {', '.join(unknown) or '(none given)'}; "
                         f"choose from {', '.join(known)}")
    return list(dict.fromkeys(names))


def create_metrics(names: Iterable[str], setup: MetricSetup, explicit: bool = False) -> dict[str, Metric]:
    """The named metrics, built from `setup` (no model loads yet), in registry order. A metric
    whose `needs` are not all in the set is left out, or with `explicit` (the user named it),
    refused with a ValueError."""
    chosen = set(names)
    metrics: dict[str, Metric] = {}
    for name, cls in metric_classes().items():
        if name not in chosen:
            continue
        missing = [need for need in cls.needs if need not in chosen]
        if missing:
            if explicit:
                raise ValueError(f"--metrics: {name} needs {', '.join(missing)} as well")
            continue
        metrics[name] = cls(setup)
    for metric in metrics.values():
        bind = getattr(metric, "bind", None)
        if bind is not None:
            bind(metrics)
    return metrics


def metric_templates(names: Sequence[str] | None = None) -> dict[str, Metric]:
    """The metrics built with a default setup, for what needs only their declarations (the
    decision flags, merging written results); without `names`, every registered one."""
    return create_metrics(names or list(metric_classes()), MetricSetup())
