"""calibration.json: writing it, reading it back, and the pure scorer the batch run, the service
and the stream call (`load_calibration(path, metric_names)` -> `Calibration`).

Only plain numbers are stored (coefficients, fills, the calibrator's parameters): nothing is
pickled, and scoring one image is a dot product and a sigmoid (or an interpolation).

Missing terms: a term given as None (or absent from the mapping) takes its fill, the mean of
that term over the labelled rows that had it, so a row without a product check is scored as an
average product; the regenerate reason does not depend on which terms were present.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Mapping, Sequence

from aigc_eval.calibration.terms import definition_versions

FORMAT = "aigc-eval-calibration"
FORMAT_VERSION = 1
# Keys of calibration.json.
K_FORMAT, K_FORMAT_VERSION = "format", "format_version"
K_METRICS, K_DEFINITIONS, K_TERMS = "metric_set", "definition_versions", "terms"
K_MODEL, K_CATEGORIES, K_CALIBRATOR, K_THRESHOLD = "model", "categories", "calibrator", "threshold"
K_INTERCEPT, K_WEIGHTS, K_FILLS, K_INTERVALS = "intercept", "weights", "fills", "weight_intervals"
K_LABELS, K_CV, K_TOOL_VERSION, K_CREATED_AT = "labels", "cv", "tool_version", "created_at"


def tool_version() -> str:
    try:
        from importlib.metadata import version

        return version("aigc-image-eval")
    except Exception:  # not installed as a package: the source tree's pyproject version
        import tomllib

        root = Path(__file__).resolve().parents[2] / "pyproject.toml"
        try:
            return str(tomllib.loads(root.read_text(encoding="utf-8"))["project"]["version"])
        except (OSError, KeyError, ValueError):
            return "unknown"


def utc_now() -> str:
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class _Linear:
    intercept: float
    weights: dict[str, float]


class Calibration:
    """A loaded calibration: learned weights, p_accept and the regenerate threshold."""

    def __init__(self, data: Mapping[str, object], digest: str):
        self.data = data
        self.digest = digest
        self.created_at: str = str(data[K_CREATED_AT])
        self.threshold: float = float(data[K_THRESHOLD])  # type: ignore[arg-type]
        self.metric_names: tuple[str, ...] = tuple(data[K_METRICS])  # type: ignore[arg-type]
        self.terms: tuple[str, ...] = tuple(data[K_TERMS])  # type: ignore[arg-type]
        model = data[K_MODEL]
        self._fills = {t: float(model[K_FILLS][t]) for t in self.terms}  # type: ignore[index]
        self._global = _Linear(float(model[K_INTERCEPT]), {t: float(model[K_WEIGHTS][t]) for t in self.terms})  # type: ignore[index]
        self._categories = {
            str(name): _Linear(float(entry[K_INTERCEPT]), {t: float(entry[K_WEIGHTS][t]) for t in self.terms})
            for name, entry in dict(data.get(K_CATEGORIES) or {}).items()  # type: ignore[union-attr]
        }
        self._calibrator = dict(data[K_CALIBRATOR])  # type: ignore[arg-type]

    def _linear(self, category: str | None) -> _Linear:
        return self._categories.get(category or "", self._global)

    def weights(self, category: str | None) -> dict[str, float]:
        """Term name -> non-negative weight (logit per unit of the 0..1 term), the category's
        override when it has one. As --weight values they rank images as p_accept does."""
        return dict(self._linear(category).weights)

    def z(self, terms: Mapping[str, float | None], category: str | None) -> float:
        linear = self._linear(category)
        total = linear.intercept
        for name, weight in linear.weights.items():
            value = terms.get(name)
            if value is None or not math.isfinite(value):
                value = self._fills[name]
            total += weight * float(value)
        return total

    def p_accept(self, terms: Mapping[str, float | None], category: str | None) -> float:
        """The calibrated probability that people accept the image, from its terms by name (None or
        absent: the term's fill, see the module docstring) and its category (None: global weights)."""
        z = self.z(terms, category)
        cal = self._calibrator
        if cal["kind"] == "platt":
            t = float(cal["a"]) * z + float(cal["b"])
            return 1.0 / (1.0 + math.exp(-t)) if t >= 0 else math.exp(t) / (1.0 + math.exp(t))
        xs, ys = cal["x"], cal["y"]
        if z <= xs[0]:
            return float(ys[0])
        if z >= xs[-1]:
            return float(ys[-1])
        from bisect import bisect_right

        i = bisect_right(xs, z) - 1
        x0, x1, y0, y1 = xs[i], xs[i + 1], ys[i], ys[i + 1]
        return float(y0 + (y1 - y0) * (z - x0) / (x1 - x0)) if x1 > x0 else float(y1)


def file_digest(data: bytes) -> str:
    """The short hash that names a calibration: the first 12 hex digits of its file's sha256."""
    return hashlib.sha256(data).hexdigest()[:12]


def load_calibration(path: Path, metric_names: Sequence[str]) -> Calibration:
    """Read calibration.json for a run whose metrics are `metric_names`; ValueError (one line) when
    the file is missing, unreadable, not a calibration, or made for another metric set or definition."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw.decode("utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{path}: no such calibration file; make one with calibrate.py") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ValueError(f"{path}: not a calibration file ({exc})") from None
    if not isinstance(data, dict) or data.get(K_FORMAT) != FORMAT:
        raise ValueError(f"{path}: not a calibration file (no \"{K_FORMAT}\": \"{FORMAT}\"); make one with calibrate.py")
    if data.get(K_FORMAT_VERSION) != FORMAT_VERSION:
        raise ValueError(f"{path}: calibration format {data.get(K_FORMAT_VERSION)!r}, this tool reads {FORMAT_VERSION}")
    made_for = sorted(data.get(K_METRICS) or [])
    if made_for != sorted(metric_names):
        raise ValueError(f"{path}: made for the metrics {', '.join(made_for) or '(none)'}, but this run scores "
                         f"{', '.join(sorted(metric_names)) or '(none)'}; recalibrate with calibrate.py on this run's scores")
    wanted = definition_versions(list(metric_names))
    stored = data.get(K_DEFINITIONS) or {}
    changed = [f"{name} {stored.get(name)!s} -> {wanted[name]}" for name in sorted(wanted) if str(stored.get(name)) != wanted[name]]
    if changed:
        raise ValueError(f"{path}: made for other metric definitions ({'; '.join(changed)}); recalibrate with calibrate.py")
    try:
        return Calibration(data, file_digest(raw))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{path}: a calibration file with a missing or bad field ({type(exc).__name__}: {exc})") from None
