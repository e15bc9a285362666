"""One fetch-and-decode path against a real HTTP server on loopback serving hostile images."""

import numpy as np
import pytest
import torch

from aigc_eval.io.image_fetch import (
    FetchConfig,
    ImageError,
    decode_image,
    fetch_image_bytes,
    load_image,
)


@pytest.fixture
def config(tmp_path):
    return FetchConfig(timeout=1.0, retries=1, backoff=0.01, max_bytes=2_000_000, cache_dir=tmp_path / "cache")


@pytest.mark.parametrize(
    "path, reason",
    [
        ("/truncated.jpg", "cannot decode image"),
        ("/empty.png", "empty file"),
        ("/page.html", "looks like an HTML page"),
        ("/bomb.png", "decompression bomb"),
        ("/missing.png", "HTTP 404"),
        ("/slow.jpg", "timed out"),
        ("/loop", "too many redirects"),
    ],
)
def test_bad_images_give_one_line_reasons(image_server, config, path, reason):
    base, _ = image_server
    with pytest.raises(ImageError, match=reason) as info:
        load_image(base + path, config)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("path", ["/good.jpg", "/cmyk.jpg", "/grey.jpg", "/animated.gif", "/rgba.png", "/palette-alpha.png", "/grey16.png", "/exif.jpg"])
def test_every_mode_becomes_rgb(image_server, config, path):
    base, _ = image_server
    image = load_image(base + path, config)
    assert image.mode == "RGB" and image.width > 0


def test_transparency_is_composited_onto_white(image_server, config):
    base, _ = image_server
    for path in ("/rgba.png", "/palette-alpha.png"):
        pixels = np.asarray(load_image(base + path, config))
        assert tuple(pixels[0, 0]) == (255, 255, 255), path  # transparent corner
    centre = np.asarray(load_image(base + "/rgba.png", config))[32, 32]
    assert tuple(centre) == (0, 0, 255)


def test_sixteen_bit_is_scaled_not_clipped(image_server, config):
    base, _ = image_server
    value = np.asarray(load_image(base + "/grey16.png", config))[0, 0, 0]
    assert value == 128  # 32768 / 65535 of full scale; a naive convert gives 255


def test_exif_orientation_is_applied(image_server, config):
    base, _ = image_server
    assert load_image(base + "/exif.jpg", config).size == (50, 100)  # stored 100x50, rotated for display


def test_oversized_download_is_refused(image_server, config):
    base, _ = image_server
    config.max_bytes = 1000
    with pytest.raises(ImageError, match="limit"):
        fetch_image_bytes(base + "/good.jpg", config)


def test_server_errors_are_retried(image_server, config):
    base, hits = image_server
    assert load_image(base + "/flaky.jpg", config).size == (120, 90)
    assert hits["/flaky.jpg"] == 2


def test_cache_serves_the_second_fetch(image_server, config):
    base, hits = image_server
    first = fetch_image_bytes(base + "/good.jpg", config)
    second = fetch_image_bytes(base + "/good.jpg", config)
    assert first == second and hits["/good.jpg"] == 1
    assert list((config.cache_dir / "blobs").rglob("*"))  # content-addressed blob written
    config.cache_dir = None
    fetch_image_bytes(base + "/good.jpg", config)
    assert hits["/good.jpg"] == 2


def test_each_fetch_hashes_the_image_once(image_server, config, image_files, monkeypatch):
    """The digest that keys the score cache comes with the bytes: downloaded, cached or local."""
    import hashlib

    from aigc_eval.io import image_fetch
    base, hits = image_server
    calls = []
    monkeypatch.setattr(image_fetch, "content_digest", lambda data: calls.append(1) or hashlib.sha256(data).hexdigest())
    for source in (base + "/good.jpg", base + "/good.jpg", str(image_files[0])):  # download, cache, local file
        calls.clear()
        data, digest = image_fetch.fetch_image_with_digest(source, config)
        assert digest == hashlib.sha256(data).hexdigest() and len(calls) == 1
    assert hits["/good.jpg"] == 1  # the second fetch came from the cache

def test_local_paths_and_schemes(tmp_path, config, image_files):
    assert fetch_image_bytes(str(image_files[0]), config) == image_files[0].read_bytes()
    assert fetch_image_bytes(image_files[0].name, config, base_dir=tmp_path) == image_files[0].read_bytes()
    assert fetch_image_bytes(image_files[0].as_uri(), config) == image_files[0].read_bytes()
    with pytest.raises(ImageError, match="unsupported scheme ftp"):
        fetch_image_bytes("ftp://example.com/a.png", config)
    with pytest.raises(ImageError, match="no such file"):
        fetch_image_bytes(str(tmp_path / "absent.png"), config)
    with pytest.raises(ImageError, match="empty image reference"):
        fetch_image_bytes("  ", config)


def test_connection_refused_is_reported(config):
    with pytest.raises(ImageError, match="connection failed .*after 2 attempts"):
        fetch_image_bytes("http://127.0.0.1:9/x.png", config)


def test_decode_rejects_non_images():
    with pytest.raises(ImageError, match="not a recognised image"):
        decode_image(b"GIF89a-not-really")


def test_split_transforms_match_the_torchvision_reference(image_files):
    """PixelTransform + normalise gives what cn_clip's and torchvision's PIL transforms give,
    within 3 grey levels (torch's uint8 resize rounds differently), upscaling and downscaling."""
    from cn_clip.clip import image_transform
    from conftest import photo
    from PIL import Image

    from aigc_eval.scoring.clipscore import CLIP_MEAN, CLIP_STD
    from aigc_eval.scoring.image_pipeline import PixelTransform
    from aigc_eval.scoring.inception import (
        IMAGENET_MEAN,
        IMAGENET_STD,
        inception_transform,
    )

    images = [Image.open(path).convert("RGB") for path in image_files]
    images += [photo(size, seed=9) for size in [(640, 480), (333, 500), (299, 299), (1200, 230)]]
    for split, reference in [(PixelTransform(224, "bicubic", CLIP_MEAN, CLIP_STD), image_transform(224)),
                             (PixelTransform(299, "bilinear", IMAGENET_MEAN, IMAGENET_STD), inception_transform())]:
        pixels = torch.stack([split(image) for image in images])
        assert pixels.dtype == torch.uint8 and pixels.shape == (len(images), 3, split.size, split.size)
        expected = torch.stack([reference(image) for image in images])
        grey_levels = ((split.normalise(pixels) - expected) * split.std * 255).abs()
        assert grey_levels.max() <= 3 + 1e-3 and grey_levels.mean() < 0.3, (grey_levels.max(), grey_levels.mean())
    with pytest.raises(ValueError, match="bilinear or bicubic"):
        PixelTransform(224, "nearest", CLIP_MEAN, CLIP_STD)


def test_large_images_are_decoded_small(tmp_path):
    from conftest import encode, photo

    big = photo((1500, 1200), seed=1)
    jpeg, png = decode_image(encode(big, "JPEG"), draft_size=299), decode_image(encode(big, "PNG"), draft_size=299)
    assert jpeg.size == (375, 300)  # DCT scale 1/4
    assert png.size == (375, 300)  # box reduction by 4
    assert decode_image(encode(big, "PNG")).size == (1500, 1200)


def test_transparent_image_reduced_then_composited_equals_composited_then_reduced():
    """Compositing onto white after the (premultiplied) box reduction costs a fraction and
    gives the same pixels, up to rounding (premultiplied uint8), as compositing at full size first."""
    import numpy as np
    from conftest import encode, photo
    from PIL import Image

    rgba = photo((1203, 901), seed=3).convert("RGBA")
    alpha = np.random.default_rng(3).integers(0, 256, (901, 1203), dtype=np.uint8)
    alpha[:, :400] = 0  # a cut-out product: fully transparent background beside it
    rgba.putalpha(Image.fromarray(alpha, "L"))
    white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    expected = np.asarray(Image.alpha_composite(white, rgba).convert("RGB").reduce(3), dtype=int)
    got = np.asarray(decode_image(encode(rgba, "PNG"), draft_size=299), dtype=int)
    assert got.shape == expected.shape == (301, 401, 3)
    assert np.abs(got - expected).max() <= 2 and np.abs(got - expected).mean() < 0.3 and (got[:, :133] == 255).all()


def _png(kind: str) -> bytes:
    import io

    from conftest import encode, photo
    from PIL import Image

    rgb = photo((301, 207), seed=5)
    if kind == "rgba":
        rgba = rgb.convert("RGBA")
        rgba.putalpha(Image.fromarray(np.random.default_rng(5).integers(0, 256, (207, 301), dtype=np.uint8), "L"))
        return encode(rgba, "PNG")
    if kind == "rgb16":  # Pillow cannot write 16-bit RGB: the chunks by hand
        import struct
        import zlib

        array = np.asarray(rgb, dtype=">u2") * 257 + np.arange(301, dtype=">u2")[None, :, None]

        def chunk(kind: bytes, body: bytes) -> bytes:
            return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

        rows = b"".join(b"\x00" + row.tobytes() for row in array)
        return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 301, 207, 16, 2, 0, 0, 0))
                + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))
    if kind == "rgb-trns":
        buffer = io.BytesIO()
        rgb.save(buffer, "PNG", transparency=tuple(int(v) for v in np.asarray(rgb)[0, 0]))
        return buffer.getvalue()
    if kind == "palette":
        return encode(rgb.convert("P"), "PNG")
    if kind == "exif":
        buffer = io.BytesIO()
        exif = Image.Exif()
        exif[0x0112] = 6
        rgb.save(buffer, "PNG", exif=exif)
        return buffer.getvalue()
    data = encode(rgb, "PNG")
    return data[: len(data) // 2] if kind == "truncated" else data


@pytest.mark.parametrize("kind, fast", [("rgb", True), ("rgba", True), ("rgb16", False), ("rgb-trns", False),
                                        ("palette", False), ("exif", False), ("truncated", False)])
def test_pngs_libspng_decodes_are_pixel_for_pixel_pillows(kind, fast, monkeypatch):
    """The libspng path decodes plain 8-bit RGB and RGBA; what it would read differently, and
    what it cannot read, Pillow decodes (and words the error)."""
    from aigc_eval.io import image_fetch
    load = pytest.importorskip("pyspng").load
    calls, decoded_by_libspng = [], []

    def counted(data: bytes) -> np.ndarray:
        calls.append(1)
        pixels = load(data)
        decoded_by_libspng.append(1)
        return pixels

    monkeypatch.setattr(image_fetch.pyspng, "load", counted)
    data = _png(kind)

    def decoded() -> np.ndarray | str:
        try:
            return np.asarray(decode_image(data, draft_size=100))
        except ImageError as exc:
            return str(exc)

    fast_result = decoded()
    monkeypatch.setattr(image_fetch, "pyspng", None)
    pillow_result = decoded()
    assert bool(decoded_by_libspng) == fast and len(calls) <= 1
    if isinstance(pillow_result, str):
        assert fast_result == pillow_result and kind == "truncated"
    else:
        assert isinstance(fast_result, np.ndarray) and np.array_equal(fast_result, pillow_result)


@pytest.mark.parametrize("workers, ahead, window", [(1, 0, 8), (4, 0, 32), (2, 64, 64)])
def test_prepare_rows_keeps_order_and_reads_at_most_a_window_ahead(tmp_path, config, workers, ahead, window):
    """Rows come back in input order with failures in place, and the input is read at most
    `window` rows beyond what was yielded: memory does not grow with the CSV."""
    from conftest import photo

    from aigc_eval.scoring.image_pipeline import PixelTransform, prepare_rows

    class Stage:
        transform, input_size = PixelTransform(32, "bilinear", (0.5,) * 3, (0.5,) * 3), 32

        def cached_features(self, digest):
            return None

    photo((40, 30), seed=1).save(tmp_path / "a.png")
    read = []

    def rows():
        for i in range(120):
            read.append(i)
            yield {"id": str(i), "image_url": "a.png" if i % 7 else "missing.png"}

    prepared = prepare_rows(rows(), "image_url", [Stage()], config, workers, tmp_path, ahead=ahead)
    for yielded, item in enumerate(prepared, start=1):
        assert item.row["id"] == str(yielded - 1) and item.ok == bool((yielded - 1) % 7)
        assert item.inputs[0].shape == (3, 32, 32) if item.ok else "no such file" in item.error
        assert len(read) <= min(120, yielded + window)
    assert yielded == 120


def test_each_model_warms_up_once_at_the_first_row_that_needs_it():
    """A model starts loading when the first row needing it goes by, not before, once; rows
    that failed or whose features are all cached need none."""
    from aigc_eval.scoring.image_pipeline import PreparedRow, warm_up_when_needed

    done = torch.zeros(1)
    rows = [PreparedRow({"id": "bad"}, error="no such file"), PreparedRow({"id": "cached"}, "d0", [None, None], [done, done]),
            PreparedRow({"id": "new-for-is"}, "d1", [None, done], [done, None]),
            PreparedRow({"id": "new"}, "d2", [done, done], [None, None])]
    started: list[int] = []
    passed = warm_up_when_needed(iter(rows), [lambda: started.append(0), lambda: started.append(1)])
    seen = [(next(passed).row["id"], list(started)) for _ in rows]
    assert seen == [("bad", []), ("cached", []), ("new-for-is", [1]), ("new", [1, 0])]
    assert list(passed) == []
    assert list(warm_up_when_needed(iter(rows[:2]), [pytest.fail, pytest.fail])) == rows[:2]


def test_a_fetch_pool_reuses_its_connections_across_prepare_calls(tmp_path, config):
    """The service and the stream workers call prepare once a batch: with the core's FetchPool the
    image host sees one keep-alive connection per fetch thread, not one more per batch."""
    import io
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    from conftest import photo

    from aigc_eval.scoring.image_pipeline import FetchPool, PixelTransform, prepare_rows

    buffer = io.BytesIO()
    photo((40, 30), seed=2).save(buffer, format="PNG")
    body, connections = buffer.getvalue(), set()

    class KeepAlive(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def do_GET(self):
            connections.add(self.client_address)
            self.send_response(200)
            self.send_header("Content-Type", "image/png")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    class Stage:
        transform, input_size = PixelTransform(32, "bilinear", (0.5,) * 3, (0.5,) * 3), 32

        def cached_features(self, digest):
            return None

    server = ThreadingHTTPServer(("127.0.0.1", 0), KeepAlive)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/a.png"
    try:
        def batches(pool, run):  # new URLs each run: the fetch cache would answer the old ones
            for batch in range(3):
                rows = [{"id": f"{batch}-{i}", "image_url": f"{url}?{run}-{batch}-{i}"} for i in range(4)]
                assert all(item.ok for item in prepare_rows(rows, "image_url", [Stage()], config, 1, pool=pool))

        batches(None, 0)  # without a pool, each call has threads and sessions of its own
        assert len(connections) == 3
        connections.clear()
        with FetchPool(config, 1) as pool:
            batches(pool, 1)
        assert len(connections) == 1
    finally:
        server.shutdown()
        server.server_close()
