"""The one decision: a row's metric results -> its terms, weighted total, status and regenerate
reasons. The batch merge, the service and the stream's result messages all call `decide`.

total_score = sum(w_m * t_m) / sum(w_m) over the metrics m with a positive weight w_m and a term
t_m in 0..1 for this image (a term that is missing, such as a failed product check or an
Inception term with no marginal, leaves the sum). An image is an error when a required metric
failed or is missing, skipped when the only reason is that one skipped; else ok, and flagged for
regeneration by each metric's rules (e.g. clip_score below clip.min) and issue codes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from aigc_eval import columns as col
from aigc_eval.metrics.base import Metric, MetricResult


@dataclass(frozen=True)
class DecisionSettings:
    """The weights (by metric name) and rule thresholds (by `metric.rule`; None: off) in force."""

    weights: Mapping[str, float]
    thresholds: Mapping[str, float | None]

    def weight(self, name: str) -> float:
        return self.weights.get(name, 0.0)


def decision_settings(metrics: Mapping[str, Metric], weights: Mapping[str, float] | None = None,
                      thresholds: Mapping[str, str | float | None] | None = None) -> DecisionSettings:
    """Defaults from the metrics' declarations with `weights` and `thresholds` (--weight NAME=W,
    --threshold NAME.RULE=V; V may be on, for the rule's default, or off) over them; ValueError
    naming the flag for unknown names and values out of range."""
    weights, thresholds = dict(weights or {}), dict(thresholds or {})
    for name in weights:
        if name not in metrics:
            raise ValueError(f"--weight {name}=...: no such metric in this run; the metrics are {', '.join(metrics)}")
    rules = {f"{m.name}.{r.name}": r for m in metrics.values() for r in m.rules}
    for key in thresholds:
        if key not in rules:
            raise ValueError(f"--threshold {key}=...: no such rule; the rules are {', '.join(rules) or 'none'}")
    resolved_weights = {}
    for name, metric in metrics.items():
        value = weights.get(name, metric.term.default_weight if metric.term else 0.0)
        if not math.isfinite(value) or value < 0:
            raise ValueError(f"--weight {name}={value}: weights must not be negative (nor infinite)")
        resolved_weights[name] = float(value)
    resolved: dict[str, float | None] = {}
    for key, rule in rules.items():
        given = thresholds.get(key, "on" if rule.enabled else "off")
        if given in ("on", "default"):
            resolved[key] = rule.default
        elif given in ("off", None):
            resolved[key] = None
        else:
            try:
                value = float(given)
            except (TypeError, ValueError):
                raise ValueError(f"--threshold {key}={given}: expected a number, on or off") from None
            if not rule.low <= value <= rule.high:
                raise ValueError(f"--threshold {key}={value:g}: must be between {rule.low:g} and {rule.high:g}")
            resolved[key] = value
    return DecisionSettings(resolved_weights, resolved)


@dataclass
class Decision:
    """What `decide` gives for one row; `terms` and `weights` only for the terms in the total."""

    status: str
    error: str = ""
    total: float | None = None
    terms: dict[str, float] = field(default_factory=dict)
    weights: dict[str, float] = field(default_factory=dict)
    regenerate: list[str] = field(default_factory=list)
    metric_errors: dict[str, str] = field(default_factory=dict)  # optional metrics that failed: why


def _label(metric: Metric) -> str:
    return metric.name


def decide(metrics: Mapping[str, Metric], results: Mapping[str, MetricResult | None], settings: DecisionSettings,
           label: Callable[[Metric], str] | None = _label) -> Decision:
    """The decision for one row (see the module docstring). `results` maps a metric's name to
    its result, None when the row is missing from that metric's results. `label(metric)` names
    a metric in the error text ("result_clip.csv: cannot fetch ..."); None joins the distinct
    errors without names."""
    required = [m for m in metrics.values() if m.required] or list(metrics.values())
    reasons: list[str] = []
    skipped = False
    for metric in required:
        result = results.get(metric.name)
        name = label(metric) if label else ""
        if result is None:
            reasons.append(f"missing from {name}" if name else "missing")
            continue
        if result.status == col.STATUS_OK:
            continue
        skipped |= result.status == col.STATUS_SKIPPED
        text = result.error or ("skipped" if result.status == col.STATUS_SKIPPED else "not scored")
        reasons.append(f"{name}: {text}" if name else text)
    metric_errors = {m.name: r.error or "not checked" for m in metrics.values() if m not in required
                     and (r := results.get(m.name)) is not None and r.status == col.STATUS_ERROR}
    if reasons:
        only_skipped = skipped and len(reasons) == 1
        error = "; ".join(reasons if label else dict.fromkeys(reasons))
        return Decision(col.STATUS_SKIPPED if only_skipped else col.STATUS_ERROR, error, metric_errors=metric_errors)
    terms, weights = {}, {}
    for metric in metrics.values():
        result = results.get(metric.name)
        weight = settings.weight(metric.name)
        value = metric.term_value(result) if result is not None else None
        if value is not None and weight > 0:
            terms[metric.name], weights[metric.name] = value, weight
    total = sum(weights[n] * terms[n] for n in terms) / sum(weights.values()) if weights else None
    regenerate: list[str] = []
    for metric in metrics.values():
        result = results.get(metric.name)
        if result is None or not result.ok:
            continue
        for rule in metric.rules:
            threshold = settings.thresholds.get(f"{metric.name}.{rule.name}")
            value = result.values.get(rule.column)
            if threshold is not None and isinstance(value, (int, float)) and rule.fires(float(value), threshold):
                regenerate.append(rule.reason(float(value), threshold))
        regenerate += metric.issues(result)
    return Decision(col.STATUS_OK, "", total, terms, weights, regenerate, metric_errors)


def check_weights_usable(metrics: Mapping[str, Metric], settings: DecisionSettings) -> None:
    """ValueError when no metric of the run can contribute to the total (every weight 0)."""
    if not any(settings.weight(name) > 0 for name, m in metrics.items() if m.term is not None):
        raise ValueError("every weight is 0: give at least one metric a positive weight "
                         f"(--weight NAME=W with NAME in {', '.join(metrics)})")


def scored_metrics(metrics: Mapping[str, Metric], names: Sequence[str]) -> dict[str, Metric]:
    """The subset of `metrics` named in `names`, in registry order."""
    return {name: m for name, m in metrics.items() if name in names}
