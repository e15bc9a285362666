"""evaluate_product.py and the product check inside main.py --input: files, bad inputs, the total,
the regenerate reasons and the report, on real photographs (the shipped samples, CC0)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from PIL import Image
from skimage.color import hsv2rgb, rgb2hsv

from aigc_eval import columns as col
from aigc_eval.cli.product import main as product_main
from aigc_eval.cli.score import main as main_cli
from aigc_eval.product import names as pn
from conftest import ROOT, read_csv, write_csv

SAMPLES = ROOT / "samples" / "images"
CANVAS = 800


def _cutout(scale: float = 1.0) -> Image.Image:
    cut = Image.open(SAMPLES / "coffee_cutout.png").convert("RGBA")
    return cut.resize((round(cut.width * scale), round(cut.height * scale)), Image.LANCZOS) if scale != 1 else cut


def _background() -> Image.Image:
    return Image.open(SAMPLES / "rocket.jpg").convert("RGB").resize((CANVAS, CANVAS), Image.BICUBIC)


def _paste(cut: Image.Image, scale: float, centre=(0.5, 0.5), hue_shift: float = 0.0) -> Image.Image:
    """The cut-out scaled by `scale` and composited at `centre` (fractions of the canvas)."""
    product = cut.resize((round(cut.width * scale), round(cut.height * scale)), Image.LANCZOS)
    if hue_shift:
        rgba = np.asarray(product)
        hsv = rgb2hsv(rgba[..., :3])
        hsv[..., 0] = (hsv[..., 0] + hue_shift) % 1.0
        product = Image.fromarray(np.dstack([np.round(hsv2rgb(hsv) * 255).astype(np.uint8), rgba[..., 3]]), "RGBA")
    canvas = _background()
    x, y = round(centre[0] * CANVAS - product.width / 2), round(centre[1] * CANVAS - product.height / 2)
    canvas.paste(product, (x, y), product)
    return canvas


@pytest.fixture
def product_csv(tmp_path, image_server):
    """A CSV of generated images with cut-outs: good, recoloured, and every kind of bad input."""
    base, _ = image_server
    cut = _cutout()
    cut.save(tmp_path / "cutout.png")
    _cutout(5.0).save(tmp_path / "big_cutout.png")  # 1200 px wide, larger than the 800 px canvas
    _paste(cut, 2.5).save(tmp_path / "good.jpg", quality=90)
    _paste(cut, 2.5, hue_shift=0.5).save(tmp_path / "recoloured.jpg", quality=90)
    _paste(cut, 2.5).save(tmp_path / "for_big.png")
    Image.open(SAMPLES / "cat.jpg").save(tmp_path / "opaque_photo.jpg")  # no alpha, busy background
    (tmp_path / "not_an_image.png").write_text("hello")
    rows = [
        ("good", "good.jpg", "cutout.png"),
        ("recoloured", "recoloured.jpg", "cutout.png"),
        ("cutout-404", "good.jpg", f"{base}/missing.png"),
        ("cutout-not-image", "good.jpg", "not_an_image.png"),
        ("cutout-no-alpha", "good.jpg", "opaque_photo.jpg"),
        ("cutout-larger-than-canvas", "for_big.png", "big_cutout.png"),
        ("no-cutout", "good.jpg", ""),
        ("image-missing", "nowhere.jpg", "cutout.png"),
    ]
    return write_csv(tmp_path / "in.csv", [
        {"id": i, "prompt": "大理石台面上的红色咖啡杯", "image_url": image, "product_image_url": cutout, "category": "咖啡"}
        for i, image, cutout in rows
    ])


def test_evaluate_product_gives_every_row_one_result_and_says_why(product_csv, tmp_path):
    out = tmp_path / "result_product.csv"
    code = product_main(["--input", str(product_csv), "--output", str(out), "--no-cache", "-q"])
    assert code == 1  # finished, some rows are errors
    rows = {r["id"]: r for r in read_csv(out)}
    assert list(rows) == [r["id"] for r in read_csv(product_csv)]
    good = rows["good"]
    assert good[col.STATUS] == "ok" and good[pn.PRODUCT_FOUND] == "True" and good[pn.PRODUCT_ISSUES] == ""
    assert float(good[pn.PRODUCT_SCALE]) == pytest.approx(2.5, rel=0.03)
    assert float(good[pn.PRODUCT_OFFSET_X]) == pytest.approx(CANVAS / 2 - 240 * 2.5 / 2, abs=4)
    assert int(good[pn.CANVAS_WIDTH]) == CANVAS and float(good[pn.PRODUCT_SCORE]) > 0.7
    assert pn.PRODUCT_RECOLOURED in rows["recoloured"][pn.PRODUCT_ISSUES].split(";")
    assert float(rows["recoloured"][pn.PRODUCT_SCORE]) < float(good[pn.PRODUCT_SCORE])
    assert rows["cutout-404"][col.STATUS] == "error" and "HTTP 404" in rows["cutout-404"][col.ERROR]
    assert "not a recognised image format" in rows["cutout-not-image"][col.ERROR]
    assert "transparency" in rows["cutout-no-alpha"][col.ERROR]
    big = rows["cutout-larger-than-canvas"]
    assert big[col.STATUS] == "ok" and big[pn.PRODUCT_FOUND] == "True"
    assert float(big[pn.PRODUCT_SCALE]) == pytest.approx(0.5, rel=0.03)
    assert rows["no-cutout"][col.STATUS] == "skipped"
    assert rows["image-missing"][col.STATUS] == "error" and "no such file" in rows["image-missing"][col.ERROR]
    box = [int(v) for v in good[pn.PRODUCT_CROP_BOX].split()]
    assert box == pytest.approx([100, 200, 700, 600], abs=4)  # the cut-out's frame in the canvas


def test_evaluate_product_refuses_a_csv_without_the_cutout_column(tmp_path, capsys):
    path = write_csv(tmp_path / "in.csv", [{"id": "a", "prompt": "p", "image_url": "x.jpg"}])
    assert product_main(["--input", str(path), "--output", str(tmp_path / "o.csv"), "-q"]) == 2
    assert "product_image_url" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_main_input_adds_the_product_term_issues_and_report(product_csv, tmp_path, clip_dir, inception_weights):
    out = {name: tmp_path / name for name in ("clip.csv", "is.csv", "product.csv", "total.csv", "report.html")}
    code = main_cli(["--input", str(product_csv), "--model", "RN50", "--model-dir", str(clip_dir), "--weights",
                     str(inception_weights), "--clip-result", str(out["clip.csv"]), "--is-result", str(out["is.csv"]),
                     "--product-result", str(out["product.csv"]), "--output", str(out["total.csv"]),
                     "--report", str(out["report.html"]), "--category-output", str(tmp_path / "cat.csv"),
                     "--device", "cpu", "--precision", "fp32", "--no-cache", "-q"])
    assert code == 1  # image-missing is an error row
    product = {r["id"]: r for r in read_csv(out["product.csv"])}
    total = {r["id"]: r for r in read_csv(out["total.csv"])}
    assert list(total) == list(product)
    good, recoloured = total["good"], total["recoloured"]
    # total_score = (0.6 clip_norm + 0.4 is_norm + 0.5 product_score) / 1.5 (docs/metrics.md)
    expected = (0.6 * float(good[col.CLIP_NORM]) + 0.4 * float(good[col.IS_NORM])
                + 0.5 * float(product["good"][pn.PRODUCT_SCORE])) / 1.5
    assert float(good[col.TOTAL_SCORE]) == pytest.approx(expected, abs=1e-6)
    assert pn.PRODUCT_RECOLOURED in recoloured[col.REGENERATE]
    # A cut-out that cannot be used leaves the row's CLIPScore and IS alone, and its total without the term.
    broken = total["cutout-404"]
    assert broken[col.STATUS] == "ok" and "HTTP 404" in broken[col.PRODUCT_ERROR]
    assert float(broken[col.TOTAL_SCORE]) == pytest.approx(
        0.6 * float(broken[col.CLIP_NORM]) + 0.4 * float(broken[col.IS_NORM]), abs=1e-6)
    categories = read_csv(tmp_path / "cat.csv")
    assert int(categories[0][col.CAT_PRODUCT_ISSUES]) >= 1 and not math.isnan(float(categories[0][col.CAT_PRODUCT_MEAN]))
    report = out["report.html"].read_text(encoding="utf-8")
    section = report[report.index('id="products"'):]
    assert 'data-id="recoloured"' in section and pn.PRODUCT_RECOLOURED in section
    card = section[section.index('data-id="recoloured"'):].split("product-pair")[0]
    assert card.count("data:image/jpeg;base64,") == 2  # the cut-out beside the crop
    # Merging again without --input picks the same product results up; --no-product leaves them out.
    base = ["--clip-result", str(out["clip.csv"]), "--is-result", str(out["is.csv"]), "--product-result",
            str(out["product.csv"]), "--no-report", "-q"]
    assert main_cli([*base, "--output", str(tmp_path / "again.csv")]) == 1
    assert read_csv(tmp_path / "again.csv") == read_csv(out["total.csv"])
    assert main_cli([*base, "--output", str(tmp_path / "without.csv"), "--no-product"]) == 1
    without = read_csv(tmp_path / "without.csv")
    assert pn.PRODUCT_SCORE not in without[0] and not any(pn.PRODUCT_RECOLOURED in r[col.REGENERATE] for r in without)


def test_the_clip_space_product_similarity_runs_only_when_asked_for(product_csv, tmp_path, clip_dir,
                                                                     inception_weights):
    """product_clip costs two CLIP image passes a row and decides nothing by default, so the
    default set leaves it out; a flag that uses it (or --metrics naming it) runs it."""
    from aigc_eval.metrics.product_clip import PRODUCT_CLIP_SIMILARITY
    from aigc_eval.metrics.registry import default_metric_names, flagged_metrics

    assert "product_clip" not in default_metric_names()
    assert flagged_metrics({"product_clip": 0.0}, {"product_clip.min": "off"}) == set()
    assert "product_clip" in default_metric_names(flagged_metrics({}, {"product_clip.min": "on"}))
    common = ["--input", str(product_csv), "--model", "RN50", "--model-dir", str(clip_dir), "--weights",
              str(inception_weights), "--device", "cpu", "--precision", "fp32", "--no-cache", "--no-report", "-q"]
    outputs = {}
    for tag, extra in (("default", []), ("flagged", ["--threshold", "product_clip.min=on"])):
        out = tmp_path / tag
        out.mkdir()
        assert main_cli([*common, *extra, "--clip-result", str(out / "clip.csv"), "--is-result",
                         str(out / "is.csv"), "--product-result", str(out / "product.csv"),
                         "--output", str(out / "total.csv")]) == 1  # image-missing is an error row
        outputs[tag] = {r["id"]: r for r in read_csv(out / "total.csv")}
    assert PRODUCT_CLIP_SIMILARITY not in outputs["default"]["good"]
    similarity = float(outputs["flagged"]["good"][PRODUCT_CLIP_SIMILARITY])
    assert -1.0 <= similarity <= 1.0
    # The other numbers do not depend on it.
    assert outputs["flagged"]["good"][col.CLIP_SCORE] == outputs["default"]["good"][col.CLIP_SCORE]
    assert outputs["flagged"]["good"][pn.PRODUCT_SCORE] == outputs["default"]["good"][pn.PRODUCT_SCORE]


def test_canvas_size_of_a_png_is_read_from_its_header(monkeypatch):
    """The stage's canvas size (image_size) of a PNG without EXIF comes from the header alone,
    never from decoding its pixels again; a PNG whose EXIF says rotated still reads rotated."""
    import io

    from PIL import PngImagePlugin

    from aigc_eval.io.image_fetch import decode_image, image_size

    image = _background().resize((300, 200))
    plain, rotated = io.BytesIO(), io.BytesIO()
    image.save(plain, "PNG")
    exif = Image.Exif()
    exif[0x0112] = 6  # EXIF orientation: rotate 90° clockwise to display
    image.save(rotated, "PNG", exif=exif)
    assert decode_image(rotated.getvalue()).size == (200, 300)

    def no_decoding(self):
        raise AssertionError("image_size decoded the pixels")

    monkeypatch.setattr(PngImagePlugin.PngImageFile, "load", no_decoding)
    assert image_size(plain.getvalue()) == (300, 200)
    monkeypatch.undo()
    assert image_size(rotated.getvalue()) == (200, 300)
