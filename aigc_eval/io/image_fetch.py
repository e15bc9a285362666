"""Fetching and decoding the images both evaluators score: one path, one cache.

Reads: http(s) URLs (with timeouts, retries for connection errors and 5xx, a size cap) and
local paths. Writes: a content-addressed cache (`<cache>/blobs/ab/<sha256>`, and
`<cache>/urls/<sha256 of url>` holding the blob's hash) so a second run or the second
metric does not download again. Decoding applies EXIF orientation, composites
transparency onto white and turns every mode into 8-bit RGB.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import os
import random
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import requests
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from aigc_eval.io.csv_io import write_bytes_atomic
from aigc_eval.io.url_guard import UnsafeURL, check_url, guarded_session

try:  # libspng decodes PNGs in about three quarters of Pillow's time; absent where it has no wheel
    import pyspng
except ImportError:  # pragma: no cover - depends on the platform
    pyspng = None

CACHE_ENV = "AIGC_EVAL_CACHE"
DEFAULT_CACHE_DIR = Path.home() / ".cache" / "aigc-image-eval" / "images"
USER_AGENT = "aigc-image-eval/1.0 (+image quality scoring)"


class ImageError(Exception):
    """An image could not be fetched or decoded; the message is a one-line reason."""


def default_cache_dir() -> Path:
    """The image cache folder: $AIGC_EVAL_CACHE, else ~/.cache/aigc-image-eval/images."""
    return Path(os.environ[CACHE_ENV]) if os.environ.get(CACHE_ENV) else DEFAULT_CACHE_DIR


@dataclass
class FetchConfig:
    """How images are fetched; `cache_dir=None` turns the cache off."""

    timeout: float = 20.0
    retries: int = 3
    backoff: float = 0.5
    max_bytes: int = 50 * 1024 * 1024
    max_pixels: int = 64_000_000
    max_redirects: int = 5
    cache_dir: Path | None = field(default_factory=default_cache_dir)
    # For URLs from untrusted callers (the HTTP service): http(s) only, and never to loopback,
    # private, link-local or metadata addresses, redirects included (url_guard).
    public_urls_only: bool = False


class ImageCache:
    """Content-addressed blobs plus a URL -> content-hash index, both on disk."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def _url_key(self, url: str) -> Path:
        digest = hashlib.sha256(url.encode("utf-8")).hexdigest()
        return self.root / "urls" / digest[:2] / digest

    def _blob(self, digest: str) -> Path:
        return self.root / "blobs" / digest[:2] / digest

    def get(self, url: str) -> tuple[bytes, str] | None:
        """The cached bytes of `url` and their sha256 hex digest, or None."""
        try:
            digest = self._url_key(url).read_text().strip()
            data = self._blob(digest).read_bytes()
        except OSError:
            return None
        # A blob damaged on disk is treated as absent rather than scored.
        return (data, digest) if content_digest(data) == digest else None

    def put(self, url: str, data: bytes) -> str:
        """Store `data` as the content of `url`; returns its sha256 hex digest."""
        digest = content_digest(data)
        try:
            blob = self._blob(digest)
            if not blob.exists():
                write_bytes_atomic(blob, data, fsync=False)
            write_bytes_atomic(self._url_key(url), digest.encode(), fsync=False)
        except OSError:
            pass  # a cache that cannot be written only costs a later download
        return digest


def _session(config: FetchConfig) -> requests.Session:
    session = requests.Session()
    session.max_redirects = config.max_redirects
    session.headers["User-Agent"] = USER_AGENT
    return guarded_session(allow_private=False, base=session) if config.public_urls_only else session


def _download(url: str, config: FetchConfig, session: requests.Session) -> bytes:
    """One GET with a size cap and an overall deadline; raises ImageError or requests errors."""
    deadline = time.monotonic() + config.timeout
    with session.get(url, stream=True, timeout=config.timeout) as response:
        if response.status_code >= 400:
            raise ImageError(f"HTTP {response.status_code} {response.reason} for {url}")
        declared = response.headers.get("Content-Length")
        if declared and declared.isdigit() and int(declared) > config.max_bytes:
            raise ImageError(f"{url} is {int(declared)} bytes, over the {config.max_bytes}-byte limit")
        chunks, size = [], 0
        for chunk in response.iter_content(256 * 1024):  # fewer, larger reads: less per-request CPU
            size += len(chunk)
            if size > config.max_bytes:
                raise ImageError(f"{url} is over the {config.max_bytes}-byte limit")
            if time.monotonic() > deadline:
                raise requests.Timeout(f"download took longer than {config.timeout:g}s")
            chunks.append(chunk)
        return b"".join(chunks)


def content_digest(data: bytes) -> str:
    """The sha256 hex digest that keys both the download cache and the score cache."""
    return hashlib.sha256(data).hexdigest()


def fetch_image_bytes(
    source: str, config: FetchConfig, session: requests.Session | None = None, base_dir: Path | None = None
) -> bytes:
    """Return the bytes of an http(s) URL or a local file, from the cache when it has them.

    A relative local path is taken relative to `base_dir` (the input CSV's folder) when given.

    Retries connection errors, timeouts and 5xx with exponential backoff and jitter.
    Raises ImageError with a one-line reason.
    """
    return fetch_image_with_digest(source, config, session, base_dir)[0]


def fetch_image_with_digest(
    source: str, config: FetchConfig, session: requests.Session | None = None, base_dir: Path | None = None
) -> tuple[bytes, str]:
    """fetch_image_bytes, and the bytes' content_digest, hashed once (the cache already knows it)."""
    source = source.strip()
    if not source:
        raise ImageError("empty image reference")
    scheme = urlparse(source).scheme.lower()
    if scheme == "data":
        data = decode_data_uri(source, config.max_bytes)
        return data, content_digest(data)
    if config.public_urls_only:
        if scheme not in ("http", "https"):
            raise ImageError(f"only http and https image URLs are accepted here, got {source[:200]!r}")
        try:  # before the cache too: a cached private URL must not be served to a caller either
            check_url(source)
        except UnsafeURL as exc:
            raise ImageError(str(exc)) from None
    if scheme in ("http", "https"):
        cache = ImageCache(config.cache_dir) if config.cache_dir else None
        cached = cache.get(source) if cache else None
        if cached is not None:
            return cached
        data = _download_with_retries(source, config, session or _session(config))
        return data, cache.put(source, data) if cache else content_digest(data)
    if scheme == "file":
        source = urlparse(source).path
    elif len(scheme) > 1:  # one letter is a Windows drive, not a scheme
        raise ImageError(f"unsupported scheme {scheme}:// in {source}; use http, https or a local path")
    path = Path(source).expanduser()
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    if not path.is_file():
        raise ImageError(f"no such file: {path}")
    if path.stat().st_size > config.max_bytes:
        raise ImageError(f"{path} is over the {config.max_bytes}-byte limit")
    data = path.read_bytes()
    return data, content_digest(data)


def decode_data_uri(uri: str, max_bytes: int) -> bytes:
    """The bytes of a base64 `data:` URI (how the HTTP service passes an uploaded image along the
    fetch path); ImageError when it is not base64, not valid base64 or over `max_bytes`."""
    head, _, payload = uri.partition(",")
    if not head.lower().endswith(";base64"):
        raise ImageError("a data: URI must be base64 (data:[<type>];base64,<data>)")
    if len(payload) * 3 // 4 > max_bytes:
        raise ImageError(f"inline image is over the {max_bytes}-byte limit")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"inline image is not valid base64 ({exc})") from None


def _download_with_retries(url: str, config: FetchConfig, session: requests.Session) -> bytes:
    attempts = config.retries + 1
    for attempt in range(1, attempts + 1):
        try:
            return _download(url, config, session)
        except UnsafeURL as exc:  # a redirect to a refused address: not worth retrying
            raise ImageError(str(exc)) from None
        except requests.TooManyRedirects:
            raise ImageError(f"too many redirects (more than {config.max_redirects}) for {url}") from None
        except ImageError as exc:
            transient = str(exc).startswith("HTTP 5")
            reason = str(exc)
        except (requests.ConnectionError, requests.Timeout) as exc:
            transient = True
            kind = "timed out" if isinstance(exc, requests.Timeout) else "connection failed"
            reason = f"{kind} for {url}"
        except requests.RequestException as exc:
            raise ImageError(f"request failed for {url}: {type(exc).__name__}") from None
        if not transient or attempt == attempts:
            suffix = f" (after {attempt} attempts)" if attempt > 1 else ""
            raise ImageError(reason + suffix)
        time.sleep(config.backoff * 2 ** (attempt - 1) * (0.5 + random.random()))
    raise AssertionError("unreachable")


def _to_8bit(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to 8-bit RGB, or RGBA when it carries transparency."""
    if image.mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        # Pillow's own conversion clips 16-bit values at 255, which turns photos white.
        array = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode != "I" or array.max() > 255 else 255.0
        image = Image.fromarray(np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif image.mode == "F":
        image = Image.fromarray(np.clip(np.asarray(image), 0, 255).astype(np.uint8), "L")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        return image.convert("RGBA") if image.mode != "RGBA" else image
    return image.convert("RGB") if image.mode != "RGB" else image


def _onto_white(image: Image.Image) -> Image.Image:
    """An RGB or RGBA image as RGB, transparency composited onto white."""
    if image.mode == "RGB":
        return image
    background = Image.new("RGBA", image.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, image).convert("RGB")


def _decode_png_fast(data: bytes, image: Image.Image) -> Image.Image | None:
    """The PNG `image` (opened from `data`, not yet loaded) decoded by libspng, pixel for pixel
    what Pillow decodes; None where Pillow must decode it: pyspng missing, or a PNG it would
    read differently (16-bit, palette, grey, a transparent colour, interlaced, EXIF, animation)."""
    if pyspng is None or image.format != "PNG" or image.mode not in ("RGB", "RGBA"):
        return None
    if len(image.tile) != 1 or image.tile[0][3] != image.mode:  # e.g. "RGB;16B": 16 bits a channel
        return None
    if any(key in image.info for key in ("transparency", "interlace")) or getattr(image, "is_animated", False) \
            or b"eXIf" in data:
        return None
    try:
        pixels = pyspng.load(data)
    except Exception:  # a damaged file: Pillow decodes it again and words the error
        return None
    if pixels.dtype != np.uint8 or pixels.ndim != 3 or pixels.shape[2] != len(image.mode):
        return None
    return Image.fromarray(pixels, image.mode)


def decode_image(data: bytes, max_pixels: int = FetchConfig.max_pixels, draft_size: int = 0,
                 keep_alpha: bool = False) -> Image.Image:
    """Decode bytes into an 8-bit RGB image with EXIF orientation applied (first frame if animated);
    with `keep_alpha`, an image with transparency stays RGBA (a product cut-out's alpha is its mask).

    With `draft_size`, a JPEG is decoded at the smallest DCT scale (1/2, 1/4, 1/8) whose
    width and height both stay at least `draft_size`, and any other image is shrunk by the
    largest whole factor that keeps both at least `draft_size`: far less work for large
    photos that a model sees at 224 or 299 pixels anyway.

    Raises ImageError for empty, truncated, non-image or oversized (decompression bomb) data.
    """
    if not data:
        raise ImageError("empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageError(f"image is {width}x{height} pixels, over the {max_pixels}-pixel limit (decompression bomb guard)")
            image.seek(0)
            if draft_size and image.format == "JPEG":
                image.draft(None, (draft_size, draft_size))
            image = _decode_png_fast(data, image) or image
            image.load()
            ImageOps.exif_transpose(image, in_place=True)
            image = _to_8bit(image)
            factor = min(image.size) // draft_size if draft_size else 1
            # Other formats have no draft mode: a box reduction by a whole factor is as cheap.
            # Pillow reduces RGBA premultiplied, so compositing afterwards gives the same
            # pixels (up to rounding) as compositing first, on a fraction of them.
            image = image.reduce(factor) if factor >= 2 else image
            return image if keep_alpha else _onto_white(image)
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError(f"decompression bomb: {exc}") from None
    except UnidentifiedImageError:
        head = data[:64].lstrip().lower()
        hint = " (looks like an HTML page)" if head.startswith((b"<!doctype html", b"<html")) else ""
        raise ImageError(f"not a recognised image format{hint}") from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"cannot decode image: {exc}") from None


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes as decode_image shows them (EXIF rotation applied),
    read from the header alone; raises ImageError when the bytes are not an image."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            # Pillow's PNG getexif() decodes every pixel to look for EXIF stored after them; a
            # PNG whose bytes hold no eXIf chunk and no EXIF text chunk has none to find.
            if image.format == "PNG" and b"eXIf" not in data and b"Raw profile type exif" not in data:
                orientation = 1
            else:
                orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageError(f"not a recognised image format ({exc})") from None
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def load_image(
    source: str, config: FetchConfig, session: requests.Session | None = None, base_dir: Path | None = None
) -> Image.Image:
    """Fetch and decode one image into RGB; raises ImageError."""
    return decode_image(fetch_image_bytes(source, config, session, base_dir), config.max_pixels)


def new_session(config: FetchConfig) -> requests.Session:
    """A requests session with this config's redirect limit and user agent."""
    return _session(config)
