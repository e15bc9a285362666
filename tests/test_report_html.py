"""report_html.py: histograms, escaping, galleries, thumbnails, atomic writing, and the page in
a real headless Chromium (DOM, decoded images, a screenshot)."""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import subprocess
import tempfile
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path

import pytest
from conftest import photo
from PIL import Image

from aigc_eval import columns as col
from aigc_eval.decisions.report import pick_gallery, svg_histogram, write_html_report
from aigc_eval.io.image_fetch import FetchConfig

SVG = "{http://www.w3.org/2000/svg}"
FLAGS = "clip_score < 0.3; top-1 confidence < 0.2"
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


class Node:
    """A parsed HTML element: tag, attributes, children and its own text pieces."""

    def __init__(self, tag: str, attrs: dict[str, str]):
        self.tag, self.attrs, self.children, self.texts = tag, attrs, [], []

    def text(self) -> str:
        return " ".join(" ".join(self.texts + [c.text() for c in self.children]).split())

    def find_all(self, tag: str | None = None, cls: str | None = None) -> list["Node"]:
        found = []
        for child in self.children:
            if (tag is None or child.tag == tag) and (cls is None or cls in child.attrs.get("class", "").split()):
                found.append(child)
            found.extend(child.find_all(tag, cls))
        return found

    def by_id(self, ident: str) -> "Node":
        return next(n for n in self.find_all() if n.attrs.get("id") == ident)


class TreeBuilder(HTMLParser):
    def __init__(self):
        super().__init__()
        self.root = Node("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag, attrs):
        node = Node(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(node)
        if tag not in VOID:
            self.stack.append(node)

    def handle_endtag(self, tag):
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                break

    def handle_data(self, data):
        self.stack[-1].texts.append(data)


def parse(page: str) -> Node:
    builder = TreeBuilder()
    builder.feed(page)
    return builder.root


def row(ident: str, total: float | str, image: str, *, status: str = col.STATUS_OK, **extra: str) -> dict[str, str]:
    """A result_total.csv row as csv gives it (strings)."""
    cells = {
        col.ID: ident, col.PROMPT: f"prompt {ident}", col.IMAGE_URL: image, col.CLIP_SCORE: "0.4",
        col.TOP1_LABEL: "cake", col.TOP1_CONFIDENCE: "0.8", col.KL: "1.0", col.TOTAL_SCORE: str(total),
        col.STATUS: status, col.ERROR: "", col.REGENERATE: "",
    }
    return {**cells, **extra}


SUMMARY = {
    col.SUM_ROWS: 8, col.SUM_OK: 6, col.SUM_ERRORS: 1, col.SUM_SKIPPED: 1, col.SUM_CLIP_MEAN: 0.41234,
    col.SUM_TOTAL_MEAN: 0.5678, col.SUM_IS_MEAN: 2.0345, col.SUM_IS_STD: 0.1234, col.SUM_IS_CI_LOW: 1.8512,
    col.SUM_IS_CI_HIGH: 2.2101, col.SUM_IS_IMAGES: 6, col.SUM_REGENERATE: 2, col.SUM_CLIP_WEIGHT: 0.6,
    col.SUM_IS_WEIGHT: 0.4,
    col.SUM_WARNINGS: ["IS from 6 images: below 500 it is unstable", "类别不平衡：蛋糕 占 50%"],
}
CATEGORIES = [
    {col.CAT_CATEGORY: "蛋糕", col.CAT_COUNT: 4, col.CAT_SHARE: 0.5, col.CAT_CLIP_MEAN: 0.4321,
     col.CAT_CLIP_STD: 0.05, col.CAT_TOTAL_MEAN: 0.61, col.CAT_TOTAL_STD: 0.1,
     col.CAT_IS: 1.87, col.CAT_IS_IMAGES: 3, col.CAT_REGENERATE: 1},
    {col.CAT_CATEGORY: "鲜花", col.CAT_COUNT: 3, col.CAT_SHARE: 0.375, col.CAT_CLIP_MEAN: 0.3876,
     col.CAT_CLIP_STD: None, col.CAT_TOTAL_MEAN: 0.52, col.CAT_TOTAL_STD: None,
     col.CAT_IS: None, col.CAT_IS_IMAGES: 3, col.CAT_REGENERATE: 1},
]


def scored_rows(image_dir: Path) -> list[dict[str, str]]:
    """Five ok rows on real files, one ok row whose file is gone, an error and a skipped row."""
    for i in range(5):
        photo((240 + 20 * i, 180 - 10 * i), seed=i).save(image_dir / f"img{i}.{'jpg' if i % 2 else 'png'}")
    rows = [
        row("gone", 0.05, "deleted.png", **{col.CATEGORY: "蛋糕", col.REGENERATE: FLAGS}),
        row("err", "", "img0.png", status=col.STATUS_ERROR, **{col.ERROR: "HTTP 404", col.CATEGORY: "蛋糕"}),
        row("skip", "", "img1.jpg", status=col.STATUS_SKIPPED, **{col.ERROR: "nothing visual", col.CATEGORY: "鲜花"}),
    ]
    for i, total in enumerate([0.2, 0.9, 0.5, 0.7, 0.3]):
        extra = {col.CATEGORY: "蛋糕" if i % 2 else "鲜花", col.PROMPT: f"雪地背景的蛋糕 {i}",
                 col.RAW_PROMPT: f'{{"messages": [{i}]}}'}
        rows.append(row(f"img{i}", total, f"img{i}.{'jpg' if i % 2 else 'png'}", **extra))
    return rows


# --- histograms ---------------------------------------------------------------------------


def bars(svg: str) -> list[int]:
    """The counts of an svg_histogram's bars, read from their <title>s."""
    tree = ET.fromstring(svg)
    return [int(r.find(f"{SVG}title").text.rsplit(": ", 1)[1]) for r in tree.iter(f"{SVG}rect")]


def test_histogram_without_values_draws_axes_and_says_no_data():
    svg = svg_histogram([], title="CLIPScore", x_label="cosine")
    assert bars(svg) == []
    assert "no data" in svg and "(n = 0)" in svg and ">cosine</text>" in svg
    assert len(re.findall(r'class="axis"', svg)) >= 2


@pytest.mark.parametrize("values", [["0.42"], [0.3] * 5])
def test_histogram_of_one_or_all_equal_values_is_one_bar_inside_the_axes(values):
    svg = svg_histogram(values, title="t", x_label="x")
    assert bars(svg) == [len(values)]
    rect = next(ET.fromstring(svg).iter(f"{SVG}rect"))
    assert float(rect.get("width")) > 1 and 48 <= float(rect.get("x")) <= 520 - 16
    ticks = [float(t) for t in re.findall(r'text-anchor="middle">(-?[\d.]+)</text>', svg)]
    assert min(ticks) < float(values[0]) < max(ticks)


def test_histogram_counts_values_into_bins_and_skips_non_numbers():
    values = ["0.05", "0.15", "0.16", "1.0", "", "nan", "n/a", None, 0.55]
    svg = svg_histogram(values, title="Total", x_label="total", bins=10, value_range=(0.0, 1.0), marker=0.5)
    assert bars(svg) == [1, 2, 1, 1]  # 1.0 falls in the last bin
    assert "(n = 5)" in svg and "mean 0.500" in svg
    heights = [float(r.get("height")) for r in ET.fromstring(svg).iter(f"{SVG}rect")]
    assert heights[1] == pytest.approx(2 * heights[0], abs=0.2)


# --- the page -----------------------------------------------------------------------------


def test_user_text_is_escaped_everywhere(tmp_path):
    attack = "<script>alert(1)</script>"
    rows = [row('x"><img src=q onerror=alert(2)>', 0.4, "nowhere.png", **{
        col.PROMPT: attack + " 红色'蛋糕' & more", col.TOP1_LABEL: "<b>cake</b>", col.REGENERATE: "<i>low</i>",
        col.CATEGORY: "<u>cat</u>"})]
    cats = [{**CATEGORIES[0], col.CAT_CATEGORY: attack}]
    summary = {**SUMMARY, col.SUM_WARNINGS: [attack]}
    write_html_report(tmp_path / "r.html", summary=summary, rows=rows, categories=cats, title=attack,
                      image_base_dir=tmp_path)
    page = (tmp_path / "r.html").read_text(encoding="utf-8")
    assert "<script" not in page.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; 红色&#x27;蛋糕&#x27; &amp; more" in page
    tree = parse(page)
    elements = tree.find_all()
    assert not {n.tag for n in elements} & {"script", "img", "b", "i", "u"}  # the missing image is a placeholder
    assert not [name for n in elements for name in n.attrs if name.startswith("on")]
    assert gallery_ids(tree, "gallery-lowest") == ['x"><img src=q onerror=alert(2)>']
    assert tree.find_all("title")[0].text() == attack and tree.by_id("categories").find_all("th")[-1].text() == attack


def test_thumbnails_are_small_jpegs_and_a_missing_one_is_a_placeholder(tmp_path):
    rows = scored_rows(tmp_path)
    write_html_report(tmp_path / "r.html", summary=SUMMARY, rows=rows, categories=[], image_base_dir=tmp_path,
                      gallery_size=3)
    tree = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    images = tree.find_all("img")
    assert len(images) == 5
    for img in images:
        header, data = img.attrs["src"].split(",", 1)
        assert header == "data:image/jpeg;base64"
        decoded = Image.open(io.BytesIO(base64.b64decode(data)))
        assert decoded.format == "JPEG" and max(decoded.size) == 160
    [placeholder] = tree.find_all(cls="placeholder")
    assert "image unavailable" in placeholder.text()
    assert f"no such file: {tmp_path / 'deleted.png'}" in placeholder.text()


def gallery_ids(tree: Node, ident: str) -> list[str]:
    return [card.find_all(cls="card-id")[0].texts[0].strip() for card in tree.by_id(ident).find_all("figure")]


def test_galleries_show_the_lowest_and_highest_total_among_ok_rows(tmp_path):
    rows = scored_rows(tmp_path)
    rows.append(row("tie", 0.9, "img1.jpg"))  # ties keep input order: img1 first
    rows.append(row("bad", -5, "img1.jpg", status=col.STATUS_ERROR))
    assert [r[col.ID] for r in pick_gallery(rows, 2, highest=False)] == ["gone", "img0"]
    assert [r[col.ID] for r in pick_gallery(rows, 3, highest=True)] == ["img1", "tie", "img3"]
    write_html_report(tmp_path / "r.html", summary=SUMMARY, rows=rows, categories=[], image_base_dir=tmp_path,
                      gallery_size=2)
    tree = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert gallery_ids(tree, "gallery-lowest") == ["gone", "img0"]
    assert gallery_ids(tree, "gallery-highest") == ["img1", "tie"]
    flagged = tree.by_id("gallery-lowest").find_all("figure")[0]
    assert [li.text() for li in flagged.find_all("li")] == FLAGS.split("; ")


def test_empty_run_still_writes_a_page_with_placeholders(tmp_path):
    summary = {key: None for key in SUMMARY} | {col.SUM_ROWS: 0, col.SUM_WARNINGS: []}
    write_html_report(tmp_path / "r.html", summary=summary, rows=[], categories=[], fetch=FetchConfig(cache_dir=None))
    tree = parse((tmp_path / "r.html").read_text(encoding="utf-8"))
    assert tree.text().count("no data") == 2
    assert "No category column" in tree.by_id("categories").text()
    assert "nothing to show" in tree.by_id("lowest").text() and not tree.find_all("img")
    stats = {s.attrs["data-key"]: s.find_all(cls="stat-value")[0].text() for s in tree.find_all(cls="stat")}
    assert stats["rows"] == "0" and stats["mean CLIPScore"] == "—" and stats["Inception Score"] == "—"


def test_report_is_written_atomically_and_replaces_the_old_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "report.html").write_text("old")
    write_html_report(out / "report.html", summary=SUMMARY, rows=scored_rows(tmp_path), categories=CATEGORIES,
                      image_base_dir=tmp_path)
    assert [p.name for p in out.iterdir()] == ["report.html"]
    assert (out / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    with pytest.raises(ValueError, match="gallery_size"):
        write_html_report(out / "report.html", summary=SUMMARY, rows=[], categories=[], gallery_size=-1)


# --- a real browser -----------------------------------------------------------------------

# Synchronous in the load event, which fires once every image has loaded: an async probe (awaiting
# img.decode()) could still be pending when --dump-dom fires on a busy machine, as happened in CI.
PROBE = """<script>
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.filter((img) => img.complete && img.naturalWidth > 0);
  document.body.setAttribute("data-images-loaded", ok.length + "/" + images.length);
  const boxes = images.map((img) => img.getBoundingClientRect()).map((r) => [r.x, r.y, r.width, r.height]);
  document.body.setAttribute("data-image-boxes", JSON.stringify(boxes));
});
</script>"""
WINDOW = "--window-size=1280,2000"
BUDGETS = (5000, 20000, 60000)  # virtual ms: each longer one is tried only if the page was not ready


def chromium() -> str:
    for name in (os.environ.get("CHROMIUM"), "chromium", "chromium-browser"):
        if name and (found := shutil.which(name)):
            return found
    pytest.fail("Chromium not found on PATH ($CHROMIUM, chromium, chromium-browser): install Debian's package with "
                "`apt-get install chromium` (bash scripts/test.sh does)", pytrace=False)


def run_chromium(*args: str) -> str:
    """Run headless Chromium with a fresh profile and no background networking; return stdout."""
    with tempfile.TemporaryDirectory(prefix="chromium-profile-") as profile:
        command = [
            chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
            "--disable-background-networking", "--disable-component-update", "--disable-sync",
            "--hide-scrollbars", "--force-device-scale-factor=1", f"--user-data-dir={profile}", *args,
        ]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, f"chromium exited with {done.returncode}: {done.stderr[-2000:]}"
    return done.stdout


@pytest.fixture(scope="module")
def rendered(tmp_path_factory) -> tuple[Node, Image.Image]:
    """report.html for the scored rows opened in Chromium: the DOM of a copy with a probe script
    that checks every image decodes and where it lies, and a screenshot of the report itself."""
    folder = tmp_path_factory.mktemp("browser")
    report = folder / "report.html"
    write_html_report(report, summary=SUMMARY, rows=scored_rows(folder), categories=CATEGORIES, image_base_dir=folder,
                      fetch=FetchConfig(cache_dir=None), gallery_size=3)
    probe = folder / "probe.html"
    probe.write_text(report.read_text(encoding="utf-8").replace("</body>", PROBE + "</body>"), encoding="utf-8")
    for budget in BUDGETS:  # until the probe has run in the load event
        dom = parse(run_chromium(WINDOW, f"--virtual-time-budget={budget}", "--dump-dom", probe.as_uri()))
        if "data-images-loaded" in dom.find_all("body")[0].attrs:
            break
    boxes = json.loads(dom.find_all("body")[0].attrs.get("data-image-boxes", "[]"))
    shot = folder / "screenshot.png"
    for budget in BUDGETS:  # until every photo is painted
        run_chromium(WINDOW, f"--virtual-time-budget={budget}", f"--screenshot={shot}", report.as_uri())
        image = Image.open(shot).convert("RGB")
        if not blank_thumbnails(image, boxes):
            break
    return dom, image


def blank_thumbnails(screenshot: Image.Image, boxes: list[list[float]]) -> list[tuple[float, float]]:
    """Where, among the image `boxes` (x, y, width, height), the screenshot shows no photo: a
    noisy photo has thousands of colours, a broken-image icon or an empty box a few."""
    blank = []
    for x, y, w, h in boxes:
        thumbnail = screenshot.crop((round(x), round(y), round(x + w), round(y + h)))
        if len(thumbnail.getcolors(maxcolors=thumbnail.width * thumbnail.height)) <= 1000:
            blank.append((x, y))
    return blank


def test_chromium_renders_tables_summary_and_loads_every_thumbnail(rendered):
    dom, _ = rendered
    body = dom.find_all("body")[0]
    assert body.attrs.get("data-images-loaded") == "5/5"
    assert [box[2:] for box in json.loads(body.attrs["data-image-boxes"])] == [[160, 160]] * 5
    table = [[cell.text() for cell in tr.children] for tr in dom.by_id("categories").find_all("tr")]
    assert table[1:] == [
        ["蛋糕", "4", "50.0%", "0.432 ± 0.050", "0.610 ± 0.100", "1.87", "3", "1"],
        ["鲜花", "3", "37.5%", "0.388", "0.520", "—", "3", "1"],
    ]
    stats = {s.attrs["data-key"]: s.find_all(cls="stat-value")[0].text() for s in dom.find_all(cls="stat")}
    assert stats["rows"] == "8" and stats["mean CLIPScore"] == "0.412" and stats["weights"] == "0.60 / 0.40"
    assert stats["Inception Score"] == "2.03 ± 0.12" and "1.85 – 2.21, n = 6" in dom.by_id("summary").text()
    assert "类别不平衡：蛋糕 占 50%" in dom.by_id("summary").text()
    assert gallery_ids(dom, "gallery-lowest") == ["gone", "img0", "img4"]
    assert gallery_ids(dom, "gallery-highest") == ["img1", "img3", "img2"]
    assert len(dom.find_all("svg", cls="histogram")) == 2


def test_chromium_screenshot_shows_the_page_and_the_photos(rendered):
    dom, image = rendered
    assert image.size == (1280, 2000)
    colours = image.getcolors(maxcolors=1280 * 2000)
    assert len(colours) > 1 and max(colours)[1] == (245, 247, 250)  # mostly the page's --bg: the CSS applied
    boxes = json.loads(dom.find_all("body")[0].attrs["data-image-boxes"])
    assert boxes and all(y + h <= 2000 for _, y, _, h in boxes)
    assert blank_thumbnails(image, boxes) == []
