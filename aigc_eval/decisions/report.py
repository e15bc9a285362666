"""The HTML report: one self-contained page an operator or product manager can open offline.

Reads: the run summary, the rows of result_total.csv and the per-category table (all passed in
by main.py), and the images of the galleries through image_fetch (so the download cache serves
them). Writes: `report.html` (atomically), with no external CSS, scripts, fonts or images:
histograms are inline SVG and thumbnails are base64 JPEG data: URIs.

    write_html_report(Path("report.html"), summary=summary, rows=rows, categories=categories)

Every piece of user text (ids, prompts, labels, errors) is HTML-escaped.
"""

from __future__ import annotations

import base64
import html
import io
import math
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from pathlib import Path
from typing import Iterable, Sequence

from aigc_eval import columns as col
from aigc_eval.decisions.report_style import CSS
from aigc_eval.io.csv_io import write_text_atomic
from aigc_eval.io.image_fetch import (
    FetchConfig,
    ImageError,
    decode_image,
    fetch_image_bytes,
)

THUMBNAIL_PX = 160
THUMBNAIL_QUALITY = 82
THUMBNAIL_WORKERS = 8
MISSING = "—"


def esc(value: object) -> str:
    """HTML-escape any value for text or a quoted attribute; None becomes an empty string."""
    return html.escape("" if value is None else str(value), quote=True)


def to_float(value: object) -> float | None:
    """A finite float from a number or a CSV cell, or None for "", None, NaN, inf or junk."""
    if value is None or isinstance(value, bool):
        return None
    try:
        number = float(str(value).strip()) if isinstance(value, str) else float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def fmt(value: object, digits: int = 3) -> str:
    """A number with `digits` decimals, or an em dash when it is unknown."""
    number = to_float(value)
    return MISSING if number is None else f"{number:.{digits}f}"


def nice_step(span: float, target_ticks: int = 5) -> float:
    """A 1, 2 or 5 times a power of ten step giving about `target_ticks` ticks over `span`."""
    raw = span / max(target_ticks, 1)
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10 ** math.floor(math.log10(raw))
    return next(m * power for m in (1, 2, 5, 10) if m * power >= raw)


def histogram_range(values: Sequence[float], value_range: tuple[float, float] | None) -> tuple[float, float, float]:
    """(low, high, tick step) of the x axis: `value_range` when given, else the data snapped to
    nice ticks; all-equal data get a margin on each side so the bar has a width."""
    if value_range is not None:
        low, high = value_range
    elif values:
        low, high = min(values), max(values)
    else:
        low, high = 0.0, 1.0
    if high <= low:
        pad = max(abs(low) * 0.1, 0.05)
        low, high = low - pad, high + pad
    step = nice_step(high - low)
    if value_range is None:
        low, high = math.floor(low / step + 1e-9) * step, math.ceil(high / step - 1e-9) * step
    return low, high, step


def bin_counts(values: Sequence[float], low: float, high: float, bins: int) -> list[int]:
    """Counts of `values` in `bins` equal bins over [low, high]; values outside go to the end bins."""
    counts = [0] * bins
    width = (high - low) / bins
    for value in values:
        counts[min(bins - 1, max(0, int((value - low) / width)))] += 1
    return counts


def svg_text(cls: str, x: float, y: float, content: object, anchor: str = "middle", attrs: str = "") -> str:
    """An SVG <text> element with escaped content."""
    return f'<text class="{cls}" x="{x:.1f}" y="{y:.1f}" text-anchor="{anchor}"{attrs}>{esc(content)}</text>'


def svg_line(cls: str, x1: float, y1: float, x2: float, y2: float) -> str:
    """An SVG <line> element."""
    return f'<line class="{cls}" x1="{x1:.1f}" y1="{y1:.1f}" x2="{x2:.1f}" y2="{y2:.1f}"/>'


def svg_histogram(
    values: Iterable[object],
    *,
    title: str,
    x_label: str,
    bins: int = 20,
    value_range: tuple[float, float] | None = None,
    marker: float | None = None,
    marker_label: str = "mean",
    width: int = 520,
    height: int = 260,
) -> str:
    """An inline SVG histogram with axes, ticks and labels; non-numeric values are ignored.

    `value_range` fixes the x axis (values outside are counted in the end bins); `marker`
    draws a dashed vertical line (the mean). No data gives the empty axes with "no data".
    """
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    data = [v for v in (to_float(x) for x in values) if v is not None]
    left, right, top, bottom = 48, 16, 40, 44
    plot_w, plot_h = width - left - right, height - top - bottom
    low, high, step = histogram_range(data, value_range)
    counts = bin_counts(data, low, high, bins)
    y_step = max(1, int(nice_step(max(counts, default=0) or 1, 4)))
    y_max = max(y_step, math.ceil(max(counts, default=0) / y_step) * y_step)

    def x_of(value: float) -> float:
        return left + (value - low) / (high - low) * plot_w

    def y_of(count: float) -> float:
        return top + plot_h - count / y_max * plot_h

    label = f"{title}: {len(data)} values" if data else f"{title}: no data"
    base = top + plot_h
    parts = [
        f'<svg class="histogram" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="{esc(label)}">',
        svg_text("h-title", left, 18, f"{title} (n = {len(data)})", anchor="start"),
    ]
    for i in range(0, y_max + 1, y_step):
        y = y_of(i)
        parts += [svg_line("grid", left, y, left + plot_w, y), svg_text("tick", left - 6, y + 4, i, "end")]
    bin_w = (high - low) / bins
    for i, count in enumerate(counts):
        if count:
            x0, x1 = x_of(low + i * bin_w), x_of(low + (i + 1) * bin_w)
            parts.append(
                f'<rect class="bar" x="{x0 + 0.5:.1f}" y="{y_of(count):.1f}" width="{max(x1 - x0 - 1, 1):.1f}" '
                f'height="{base - y_of(count):.1f}"><title>{low + i * bin_w:.3g} to '
                f"{low + (i + 1) * bin_w:.3g}: {count}</title></rect>"
            )
    decimals = max(0, -math.floor(math.log10(step) + 1e-9))
    for k in range(int((high - low) / step + 1e-9) + 1):
        x = x_of(low + k * step)
        tick = f"{low + k * step:.{decimals}f}"
        parts += [svg_line("axis", x, base, x, base + 4), svg_text("tick", x, base + 17, tick)]
    parts += [
        svg_line("axis", left, base, left + plot_w, base),
        svg_line("axis", left, top, left, base),
        svg_text("label", left + plot_w / 2, height - 6, x_label),
        svg_text("label", 0, 0, "images", attrs=f' transform="translate(13 {top + plot_h / 2:.1f}) rotate(-90)"'),
    ]
    if not data:
        parts.append(svg_text("empty", left + plot_w / 2, top + plot_h / 2, "no data"))
    mark = to_float(marker)
    if data and mark is not None and low <= mark <= high:
        x = x_of(mark)
        anchor, dx = ("end", -4) if x > left + plot_w * 0.7 else ("start", 4)
        parts.append(svg_line("marker", x, top, x, base))
        parts.append(svg_text("marker-label", x + dx, top - 5, f"{marker_label} {mark:.3f}", anchor))
    parts.append("</svg>")
    return "\n".join(parts)


def pick_gallery(rows: Sequence[dict[str, str]], size: int, *, highest: bool) -> list[dict[str, str]]:
    """The `size` ok rows with the lowest (or highest) numeric total_score; ties keep input order."""
    scored = [
        (total, index, row)
        for index, row in enumerate(rows)
        if row.get(col.STATUS) == col.STATUS_OK and (total := to_float(row.get(col.TOTAL_SCORE))) is not None
    ]
    scored.sort(key=lambda item: (-item[0] if highest else item[0], item[1]))
    return [row for _, _, row in scored[: max(size, 0)]]


def thumbnail_data_uri(source: str, fetch: FetchConfig, base_dir: Path | None = None, size: int = THUMBNAIL_PX) -> str:
    """A `data:image/jpeg;base64,...` thumbnail at most `size` px on a side; raises ImageError."""
    image = decode_image(fetch_image_bytes(source, fetch, base_dir=base_dir), fetch.max_pixels, draft_size=size)
    try:
        image.thumbnail((size, size))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    except (OSError, ValueError) as exc:
        raise ImageError(f"cannot make a thumbnail: {exc}") from None
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def thumbnail_html(source: str, fetch: FetchConfig, base_dir: Path | None = None) -> str:
    """An <img> with the embedded thumbnail, or a placeholder box naming why it is missing."""
    try:
        uri = thumbnail_data_uri(source, fetch, base_dir)
    except (ImageError, OSError) as exc:
        return (
            f'<div class="thumb placeholder" title="{esc(source)}">'
            f"<span>image unavailable</span><small>{esc(exc)}</small></div>"
        )
    return f'<img class="thumb" src="{uri}" alt="{esc(source)}">'


def gallery_card(row: dict[str, str], thumb: str, id_col: str, prompt_col: str) -> str:
    """One gallery card: thumbnail, id, scores, top-1 label, prompt and regenerate reasons."""
    reasons = [r.strip() for r in (row.get(col.REGENERATE) or "").split(";") if r.strip()]
    label, confidence = row.get(col.TOP1_LABEL) or "", to_float(row.get(col.TOP1_CONFIDENCE))
    top1 = f"{esc(label)} ({confidence:.0%})" if confidence is not None else esc(label) or MISSING
    category = f'<span class="chip">{esc(row[col.CATEGORY])}</span>' if row.get(col.CATEGORY) else ""
    raw = row.get(col.RAW_PROMPT) or ""
    raw_html = ""
    if raw and raw != row.get(prompt_col):
        raw_html = f'<details><summary>raw prompt</summary><p class="raw">{esc(raw)}</p></details>'
    flags = "".join(f'<li>{esc(r)}</li>' for r in reasons)
    return (
        f'<figure class="card{" flagged" if reasons else ""}">{thumb}<figcaption>'
        f'<div class="card-id">{esc(row.get(id_col))} {category}</div>'
        f'<dl class="scores"><dt>total</dt><dd>{fmt(row.get(col.TOTAL_SCORE))}</dd>'
        f"<dt>CLIPScore</dt><dd>{fmt(row.get(col.CLIP_SCORE))}</dd><dt>top-1</dt><dd>{top1}</dd></dl>"
        f'<p class="prompt" title="{esc(row.get(prompt_col))}">{esc(row.get(prompt_col))}</p>{raw_html}'
        f'{f"<ul class=regenerate>{flags}</ul>" if flags else ""}</figcaption></figure>'
    )


def _weights_card(summary: dict[str, object]) -> tuple[str, str, str]:
    """The weights of the total: every weighted metric's (a plugin's too), else CLIPScore / Inception."""
    weights = summary.get(col.SUM_WEIGHTS)
    if isinstance(weights, dict) and weights:
        shown = {name: w for name, w in weights.items() if w}
        return ("weights", esc(" · ".join(f"{name} {fmt(w, 2)}" for name, w in shown.items())),
                "each metric's weight in the total")
    return ("weights", f"{fmt(summary.get(col.SUM_CLIP_WEIGHT), 2)} / {fmt(summary.get(col.SUM_IS_WEIGHT), 2)}",
            "CLIPScore / Inception in the total")


def mean_std(mean: object, std: object, digits: int = 3) -> str:
    """'mean ± std', or just the mean when the spread is unknown."""
    return fmt(mean, digits) + (f" ± {fmt(std, digits)}" if to_float(std) is not None else "")


def summary_html(summary: dict[str, object]) -> str:
    """The headline figures as cards, then the warnings."""
    ci_low, ci_high = summary.get(col.SUM_IS_CI_LOW), summary.get(col.SUM_IS_CI_HIGH)
    interval = f"interval {fmt(ci_low, 2)} – {fmt(ci_high, 2)}" if to_float(ci_low) is not None else "no interval"
    cards = [
        ("rows", fmt(summary.get(col.SUM_ROWS), 0), "in result_total.csv"),
        ("scored ok", fmt(summary.get(col.SUM_OK), 0), ""),
        ("errors", fmt(summary.get(col.SUM_ERRORS), 0), ""),
        ("skipped", fmt(summary.get(col.SUM_SKIPPED), 0), "nothing to score"),
        ("mean CLIPScore", fmt(summary.get(col.SUM_CLIP_MEAN)), "cosine, ok rows"),
        ("mean total score", fmt(summary.get(col.SUM_TOTAL_MEAN)), "0 to 1"),
        (
            "Inception Score",
            mean_std(summary.get(col.SUM_IS_MEAN), summary.get(col.SUM_IS_STD), 2),
            f"bootstrap {interval}, n = {fmt(summary.get(col.SUM_IS_IMAGES), 0)} images",
        ),
        ("to regenerate", fmt(summary.get(col.SUM_REGENERATE), 0), "see the galleries"),
        *([("mean product score", fmt(summary.get(col.SUM_PRODUCT_MEAN)),
            f"{fmt(summary.get(col.SUM_PRODUCT_ISSUES), 0)} images with a product issue")]
          if col.SUM_PRODUCT_MEAN in summary else []),
        _weights_card(summary),
    ]
    items = "".join(
        f'<div class="stat" data-key="{esc(name)}"><div class="stat-name">{esc(name)}</div>'
        f'<div class="stat-value">{value}</div><div class="stat-note">{esc(note)}</div></div>'
        for name, value, note in cards
    )
    warnings = summary.get(col.SUM_WARNINGS) or []
    if isinstance(warnings, str):
        warnings = [warnings]
    notes = "".join(f"<li>{esc(w)}</li>" for w in warnings)  # type: ignore[union-attr]
    return f'<div class="stats">{items}</div>' + (f'<ul class="warnings">{notes}</ul>' if notes else "")


def category_table(categories: Sequence[dict[str, object]]) -> str:
    """The per-category table (share is a fraction, shown as a percentage)."""
    if not categories:
        return '<p class="muted">No category column in the input, so no per-category table.</p>'
    names = ["category", "images", "share", "CLIPScore", "total score", "Inception Score", "IS images", "to regenerate"]
    with_product = any(to_float(cat.get(col.CAT_PRODUCT_MEAN)) is not None for cat in categories)
    names += ["product score", "product issues"] if with_product else []
    head = "".join(f"<th>{name}</th>" for name in names)
    body = []
    for cat in categories:
        share = to_float(cat.get(col.CAT_SHARE))
        cells = [
            f'<th scope="row">{esc(cat.get(col.CAT_CATEGORY))}</th>',
            f'<td class="num">{fmt(cat.get(col.CAT_COUNT), 0)}</td>',
            f'<td class="num">{f"{share:.1%}" if share is not None else MISSING}</td>',
            f'<td class="num">{mean_std(cat.get(col.CAT_CLIP_MEAN), cat.get(col.CAT_CLIP_STD))}</td>',
            f'<td class="num">{mean_std(cat.get(col.CAT_TOTAL_MEAN), cat.get(col.CAT_TOTAL_STD))}</td>',
            f'<td class="num">{fmt(cat.get(col.CAT_IS), 2)}</td>',
            f'<td class="num">{fmt(cat.get(col.CAT_IS_IMAGES), 0)}</td>',
            f'<td class="num">{fmt(cat.get(col.CAT_REGENERATE), 0)}</td>',
        ]
        if with_product:
            cells += [f'<td class="num">{fmt(cat.get(col.CAT_PRODUCT_MEAN))}</td>',
                      f'<td class="num">{fmt(cat.get(col.CAT_PRODUCT_ISSUES), 0)}</td>']
        body.append(f"<tr>{''.join(cells)}</tr>")
    return f'<table class="categories"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>'


def write_html_report(
    path: Path,
    *,
    summary: dict[str, object],
    rows: list[dict[str, str]],
    categories: list[dict[str, object]],
    id_col: str = col.ID,
    prompt_col: str = col.PROMPT,
    image_col: str = col.IMAGE_URL,
    image_base_dir: Path | None = None,
    fetch: FetchConfig | None = None,
    gallery_size: int = 12,
    title: str = "AI image quality report",
    sections: Sequence[tuple[str, str, str]] = (),
    css: str = "",
) -> None:
    """Write the self-contained report to `path` atomically.

    The galleries show the `gallery_size` ok rows with the lowest and with the highest
    total_score; thumbnails come through image_fetch (relative paths from `image_base_dir`),
    and one that cannot be fetched or decoded becomes a placeholder naming the reason.
    `sections` adds (id, heading, HTML) sections after the galleries, styled by `css`.
    Raises ValueError for a negative `gallery_size`.
    """
    if gallery_size < 0:
        raise ValueError(f"gallery_size must be 0 or more, got {gallery_size}")
    fetch = fetch or FetchConfig()
    lowest = pick_gallery(rows, gallery_size, highest=False)
    highest = pick_gallery(rows, gallery_size, highest=True)
    sources = list(dict.fromkeys(row.get(image_col) or "" for row in lowest + highest))
    with ThreadPoolExecutor(THUMBNAIL_WORKERS) as pool:
        thumbs = dict(zip(sources, pool.map(lambda s: thumbnail_html(s, fetch, image_base_dir), sources)))

    def gallery(picked: list[dict[str, str]], name: str) -> str:
        if not picked:
            return '<p class="muted">No image was scored, so there is nothing to show.</p>'
        cards = "".join(gallery_card(r, thumbs[r.get(image_col) or ""], id_col, prompt_col) for r in picked)
        return f'<div class="gallery" id="{name}">{cards}</div>'

    ok_rows = [r for r in rows if r.get(col.STATUS) == col.STATUS_OK]
    charts = svg_histogram(
        (r.get(col.CLIP_SCORE) for r in ok_rows), title="CLIPScore", x_label="CLIPScore (cosine similarity)",
        marker=to_float(summary.get(col.SUM_CLIP_MEAN)),
    ) + svg_histogram(
        (r.get(col.TOTAL_SCORE) for r in ok_rows), title="Total score", x_label="total_score (weighted, 0 to 1)",
        value_range=(0.0, 1.0), marker=to_float(summary.get(col.SUM_TOTAL_MEAN)),
    )
    generated = datetime.now().astimezone().strftime("%Y-%m-%d %H:%M %Z")
    page = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{esc(title)}</title><style>{CSS}{css}</style></head>
<body><main>
<h1>{esc(title)}</h1><p class="muted">Generated {esc(generated)} from {len(rows)} rows.</p>
<section id="summary"><h2>Summary</h2>{summary_html(summary)}</section>
<section id="histograms"><h2>Score distributions (ok rows)</h2><div class="charts">{charts}</div></section>
<section id="categories"><h2>By category</h2>{category_table(categories)}</section>
<section id="lowest"><h2>Lowest total score</h2>{gallery(lowest, "gallery-lowest")}</section>
<section id="highest"><h2>Highest total score</h2>{gallery(highest, "gallery-highest")}</section>
{"".join(f'<section id="{esc(key)}"><h2>{esc(heading)}</h2>{body}</section>' for key, heading, body in sections)}
</main></body></html>
"""
    write_text_atomic(path, page)
