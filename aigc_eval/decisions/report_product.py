"""The report's product section: each image with product issues, the merchant's cut-out beside the
matching crop of the generated image (where the product was found), with its issues and scores.

The crop is the cut-out's whole frame mapped into the canvas (`product_crop_box`, in canvas
pixels, from result_product.csv); both pictures come through image_fetch, as the galleries' do.
"""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Sequence

from PIL import Image

from aigc_eval import columns as col
from aigc_eval.decisions.report import (
    MISSING,
    THUMBNAIL_PX,
    THUMBNAIL_QUALITY,
    THUMBNAIL_WORKERS,
    esc,
    fmt,
)
from aigc_eval.io.image_fetch import (
    FetchConfig,
    ImageError,
    decode_image,
    fetch_image_bytes,
)
from aigc_eval.product import names as pn

PRODUCT_SECTION_SIZE = 24  # flagged images shown, worst product_score first


def crop_box(row: dict[str, object]) -> tuple[int, int, int, int] | None:
    """The row's product crop box (x0, y0, x1, y1) in canvas pixels, or None when absent or malformed."""
    try:
        x0, y0, x1, y1 = (int(float(v)) for v in str(row.get(pn.PRODUCT_CROP_BOX) or "").split())
    except ValueError:
        return None
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None


def _jpeg_uri(image: Image.Image) -> str:
    image.thumbnail((THUMBNAIL_PX, THUMBNAIL_PX))
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=THUMBNAIL_QUALITY, optimize=True)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def picture_html(source: str, fetch: FetchConfig, base_dir: Path | None, box: tuple[int, int, int, int] | None,
                 caption: str) -> str:
    """A thumbnail of `source` (cropped to `box`, in the image's own pixels, when given), or a
    placeholder naming why it is missing."""
    try:
        image = decode_image(fetch_image_bytes(source, fetch, base_dir=base_dir), fetch.max_pixels)
        if box is not None:
            image = image.crop(box)
        uri = _jpeg_uri(image)
    except (ImageError, OSError, ValueError) as exc:
        return (f'<div class="thumb placeholder" title="{esc(source)}"><span>{esc(caption)} unavailable</span>'
                f"<small>{esc(exc)}</small></div>")
    return f'<figure class="pair-side"><img class="thumb" src="{uri}" alt="{esc(caption)}"><figcaption>{esc(caption)}</figcaption></figure>'


def product_section(rows: Sequence[dict[str, object]], fetch: FetchConfig, base_dir: Path | None, *,
                    id_col: str = col.ID, image_col: str = col.IMAGE_URL, product_col: str = col.PRODUCT_IMAGE_URL,
                    size: int = PRODUCT_SECTION_SIZE) -> str:
    """The section's HTML: up to `size` rows with product issues, lowest product_score first."""
    flagged = [r for r in rows if r.get(pn.PRODUCT_ISSUES)]
    flagged.sort(key=lambda r: float(r.get(pn.PRODUCT_SCORE) or 0.0))
    if not flagged:
        return '<p class="muted">No image has a product issue.</p>'

    def card(row: dict[str, object]) -> str:
        cutout = picture_html(str(row.get(product_col) or ""), fetch, base_dir, None, "cut-out")
        box = crop_box(row)
        generated = picture_html(str(row.get(image_col) or ""), fetch, base_dir, box,
                                 "where it was found" if box else "generated image")
        issues = "".join(f"<li>{esc(issue)}</li>" for issue in str(row[pn.PRODUCT_ISSUES]).split(";") if issue)
        return (f'<div class="card flagged product-pair" data-id="{esc(row.get(id_col))}"><div class="pair">{cutout}{generated}</div>'
                f'<div class="card-id">{esc(row.get(id_col))}</div><dl class="scores"><dt>product score</dt>'
                f"<dd>{fmt(row.get(pn.PRODUCT_SCORE))}</dd><dt>total</dt><dd>{fmt(row.get(col.TOTAL_SCORE))}</dd></dl>"
                f'<ul class="regenerate">{issues or MISSING}</ul></div>')

    with ThreadPoolExecutor(THUMBNAIL_WORKERS) as pool:
        cards = list(pool.map(card, flagged[:size]))
    more = f'<p class="muted">{len(flagged) - size} more in result_total.csv.</p>' if len(flagged) > size else ""
    return f'<div class="gallery products">{"".join(cards)}</div>{more}'


PRODUCT_CSS = """
.product-pair .pair { display: flex; gap: 6px; }
.pair-side { margin: 0; flex: 1; text-align: center; font-size: 11px; color: var(--muted); }
.pair-side .thumb { width: 100%; height: auto; }
"""
