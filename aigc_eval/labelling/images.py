"""The images the page shows, fetched server-side through the scoring stages' fetch path and
cache (io/image_fetch.py), shrunk to a display size and kept in a bounded memory cache.

URLs go through the same guard as the HTTP service (io/url_guard.py: no loopback, private,
link-local or metadata addresses, redirects included) unless --allow-private-urls; local paths
are served only from inside the run's folder (resolved, symlinks included), so a row cannot make
the page read /etc/passwd or ../other-run/.
"""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlparse

from aigc_eval.io.image_fetch import FetchConfig, ImageError, decode_image, fetch_image_bytes

DISPLAY_SIDE = 1600  # the longest side the page gets: sharp on a large screen, small to send
JPEG_QUALITY = 85
CACHE_BYTES = 256 * 1024 * 1024


class ImageRefused(ImageError):
    """A reference the page will not serve (outside the run's folder, or an unsupported scheme)."""


class ImageSource:
    """Display-size JPEGs of a run's images, by their reference in the scores CSV."""

    def __init__(self, run_dir: Path, config: FetchConfig, allow_private: bool = False,
                 side: int = DISPLAY_SIDE, cache_bytes: int = CACHE_BYTES):
        self.run_dir = Path(run_dir).resolve()
        self.url_config = replace(config, public_urls_only=not allow_private)
        self.file_config = replace(config, public_urls_only=False)
        self.side, self.cache_bytes = side, cache_bytes
        self._cache: OrderedDict[str, bytes] = OrderedDict()
        self._size = 0
        self._lock = threading.Lock()

    def local_path(self, ref: str) -> Path:
        """The file a local reference names, inside the run's folder; ImageRefused otherwise."""
        text = urlparse(ref).path if ref.lower().startswith("file:") else ref
        path = Path(text).expanduser()
        path = (path if path.is_absolute() else self.run_dir / path).resolve()
        if not path.is_relative_to(self.run_dir):
            raise ImageRefused(f"{ref[:200]} is outside the run's folder {self.run_dir}; the page serves local "
                               "images only from there")
        return path

    def fetch(self, ref: str) -> bytes:
        """The original bytes of an image reference; ImageError (ImageRefused) with a one-line reason."""
        ref = ref.strip()
        scheme = urlparse(ref).scheme.lower()
        if scheme in ("http", "https"):
            return fetch_image_bytes(ref, self.url_config)
        if scheme in ("", "file") or len(scheme) == 1:
            return fetch_image_bytes(str(self.local_path(ref)), self.file_config)
        raise ImageRefused(f"unsupported image reference {ref[:200]!r}; use http(s) or a path in the run's folder")

    def display(self, ref: str) -> bytes:
        """A JPEG of the image, its longest side at most `side` pixels (cached in memory)."""
        with self._lock:
            if ref in self._cache:
                self._cache.move_to_end(ref)
                return self._cache[ref]
        image = decode_image(self.fetch(ref), self.url_config.max_pixels, draft_size=self.side // 2)
        image.thumbnail((self.side, self.side))
        buffer = io.BytesIO()
        image.save(buffer, "JPEG", quality=JPEG_QUALITY)
        data = buffer.getvalue()
        with self._lock:
            if ref not in self._cache:
                self._cache[ref] = data
                self._size += len(data)
            while self._size > self.cache_bytes and self._cache:
                self._size -= len(self._cache.popitem(last=False)[1])
        return data
