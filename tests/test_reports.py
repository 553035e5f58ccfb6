"""synthscope.reports: escaping, embedded images, offline-ness, re-rendering, contents, formatting."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import re
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from synthscope.reports import (
    DEFAULT_CAVEATS,
    Figure,
    Gallery,
    GalleryImage,
    Metric,
    Report,
    ReportFormatError,
    Section,
    SectionProvider,
    Table,
    Text,
    collect_provenance,
    file_sha256,
    format_metric,
    load_report,
    render_report,
    write_report,
    read_table,
    rerender,
)
from synthscope.reports.demo import build_demo_report, demo_report

EVIL = "<script>alert(1)</script>"
ESCAPED = "&lt;script&gt;alert(1)&lt;/script&gt;"


class Page(HTMLParser):
    """The parts of a page the tests look at: every start tag with its attributes, and the text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str]]] = []
        self.text: list[str] = []
        self._stack: list[tuple[str, dict[str, str]]] = []
        self.by_class: dict[str, list[str]] = {}
        self._capture: list[tuple[str, list[str]]] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = {k: v or "" for k, v in attrs}
        self.tags.append((tag, attributes))
        if tag not in ("img", "meta", "link", "br", "input"):  # void elements have no text to capture
            self._stack.append((tag, attributes))
            for name in attributes.get("class", "").split():
                self._capture.append((name, []))

    def handle_endtag(self, tag: str) -> None:
        if not self._stack:
            return
        _, attributes = self._stack.pop()
        for _ in attributes.get("class", "").split():
            name, parts = self._capture.pop()
            self.by_class.setdefault(name, []).append("".join(parts).strip())

    def handle_data(self, data: str) -> None:
        self.text.append(data)
        for _, parts in self._capture:
            parts.append(data)

    def attrs(self, tag: str) -> list[dict[str, str]]:
        return [a for t, a in self.tags if t == tag]


def _png(size: int = 16, seed: int = 0) -> bytes:
    rng = np.random.default_rng(seed)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (size, size), dtype=np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return demo_report(tmp_path_factory.mktemp("demo") / "report").parent


def _hostile_report(tmp_path: Path) -> Report:
    odd_file = tmp_path / "fig \"one\" & 'two' <b>.png"
    odd_file.write_bytes(_png(20, 1))
    return Report(
        title=f"Title {EVIL}",
        subtitle=EVIL,
        summary=[f"Prompt {EVIL} was used."],
        highlights=[Metric(EVIL, 0.5, 0.4, 0.6, unit=EVIL, note=EVIL)],
        sections=[Section(EVIL, f"Section {EVIL}", intro=EVIL, caveats=[f"Caveat {EVIL}"], blocks=[
            Text(f"Text {EVIL}"),
            Metric(f"Metric {EVIL}", 1.25, note=EVIL),
            Table(f"Table {EVIL}", pd.DataFrame({EVIL: [EVIL, "plain"], "n": [1, 2]}), caption=EVIL),
            Figure(odd_file.name, odd_file, caption=EVIL, alt=f"alt {EVIL} \"q\" & 's'"),
            Gallery(EVIL, [GalleryImage(odd_file, odd_file.name), (_png(16, 2), EVIL)], caption=EVIL),
        ])],
        provenance={EVIL: EVIL, "nested": {"prompt": EVIL}},
        caveats=[EVIL],
    )


# -- escaping --------------------------------------------------------------------------------------

def test_user_text_is_escaped_everywhere(tmp_path):
    index = write_report(_hostile_report(tmp_path), tmp_path / "out")
    html = index.read_text(encoding="utf-8")
    assert "<script" not in html.lower()
    assert "alert(1)</" not in html
    # title, subtitle, summary, section title/intro, text, metric label/unit/note, table title/cell/
    # header/caption, figure caption, gallery title/label/caption, caveats, provenance key and value
    assert html.count(ESCAPED) >= 20
    page = Page(html)
    assert not [tag for tag, _ in page.tags if tag == "script"]
    assert f"Title {EVIL}" in "".join(page.text)  # shown to the reader as the literal text
    assert page.by_class["metric-label"][0] == EVIL


def test_file_names_with_quotes_and_ampersands(tmp_path):
    index = write_report(_hostile_report(tmp_path), tmp_path / "out")
    html = index.read_text(encoding="utf-8")
    page = Page(html)
    odd_name = "fig \"one\" & 'two' <b>.png"
    assert "&amp;" in html and "&#34;one&#34;" in html
    alts = [a["alt"] for a in page.attrs("img")]
    assert f"alt {EVIL} \"q\" & 's'" in alts  # the attribute value parses back exactly: quotes did not break it
    assert odd_name in alts  # the gallery tile labelled with the file name
    assert odd_name in "".join(page.text)
    assert not [tag for tag, _ in page.tags if tag == "b"]
    # the files written are named safely, whatever the titles and labels were
    written = [p.relative_to(index.parent).as_posix() for p in index.parent.rglob("*") if p.is_file()]
    assert all(re.fullmatch(r"[a-z0-9./-]+", name) for name in written), written


# -- embedded images and offline-ness --------------------------------------------------------------

def test_every_embedded_image_decodes(demo_dir):
    html = (demo_dir / "index.html").read_text(encoding="utf-8")
    page = Page(html)
    sources = [a["src"] for a in page.attrs("img")]
    assert len(sources) == 2 + 12 + 8  # the demo's two plots and two galleries
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", html)
    assert len(uris) == len(sources)
    for source in sources:
        assert source.startswith("data:image/png;base64,")
        with Image.open(io.BytesIO(base64.b64decode(source.split(",", 1)[1], validate=True))) as image:
            image.load()
            assert image.format == "PNG" and min(image.size) >= 16
    assert "data:image/svg" not in html


def test_page_references_nothing_on_a_network(demo_dir, tmp_path):
    for html in ((demo_dir / "index.html").read_text(encoding="utf-8"),
                 write_report(_hostile_report(tmp_path), tmp_path / "out").read_text(encoding="utf-8")):
        assert "http://" not in html and "https://" not in html
        assert "@import" not in html and "url(" not in html
        assert not re.search(r"""(?:src|href|action|poster|srcset)\s*=\s*["']?\s*//""", html)
        page = Page(html)
        for tag, attributes in page.tags:
            for name in ("src", "href", "action", "poster", "srcset"):
                if name in attributes:
                    value = attributes[name]
                    assert value.startswith(("#", "data:", "tables/")), (tag, name, value[:60])
        policy = [m["content"] for m in page.attrs("meta") if m.get("http-equiv") == "Content-Security-Policy"]
        assert policy and "default-src 'none'" in policy[0] and "img-src data:" in policy[0]
        assert "@media print" in html  # the print stylesheet is inline too


def test_gallery_images_are_shown_enlarged_and_unsmoothed(demo_dir):
    html = (demo_dir / "index.html").read_text(encoding="utf-8")
    assert re.search(r"\.tile img \{[^}]*image-rendering: pixelated", html)
    page = Page(html)
    gallery_images = [a for a in page.attrs("img") if a["src"].startswith("data:") and "title" in a]
    assert len(gallery_images) == 20
    for attributes in gallery_images:
        with Image.open(io.BytesIO(base64.b64decode(attributes["src"].split(",", 1)[1]))) as image:
            natural = image.size[0]
        assert natural in (16, 24)
        assert int(attributes["width"]) in (80, 72)  # the fixed display size, not the 16-24 px of the file


# -- re-rendering from disk ------------------------------------------------------------------------

def test_rerender_rebuilds_the_same_page_from_saved_files(tmp_path):
    index = demo_report(tmp_path / "report")
    original = index.read_text(encoding="utf-8")
    data_files = {p: p.read_bytes() for p in index.parent.rglob("*") if p.is_file() and p != index}
    index.unlink()
    assert rerender(index.parent) == index
    again = index.read_text(encoding="utf-8")
    assert again == original
    assert {p: p.read_bytes() for p in data_files} == data_files  # the data files are only read
    page = Page(again)
    assert "0.87 [0.82, 0.91]" in page.by_class["metric-value"]
    assert "54.1% [48.0%, 60.0%]" in page.by_class["metric-value"]
    values = [a["data-value"] for t, a in page.tags if "data-value" in a]
    assert "0.8734" in values and "0.5412" in values  # the unrounded numbers travel with the page


def test_rerender_keeps_numbers_and_cells(tmp_path):
    frame = pd.DataFrame({
        "code": ["007", "1e5", "12", "3"],  # text that a CSV reader would happily turn into numbers
        "word": ["NA", "null", "None", "nan"],  # ... or into missing values
        "score": [0.1 + 0.2, 1 / 3, np.nan, -2.5e-7],
        "count": [1, 2, 3, 4],
        "flag": [True, False, True, False],
        "note": ["a, b", "line\nbreak", "", "\"quoted\""],
    })
    report = Report("Numbers", sections=[Section("s", "S", blocks=[
        Table("T", frame, formats={"score": ".17g"}),
        Metric("m", 0.123456789, 0.1, 0.2, fmt=".4f"),
    ])])
    index = write_report(report, tmp_path / "r")
    before = Page(index.read_text(encoding="utf-8"))
    document = json.loads((index.parent / "report.json").read_text(encoding="utf-8"))
    index.unlink()
    rerender(index.parent)
    after = Page(index.read_text(encoding="utf-8"))
    cells_before = [t for t in before.text if t.strip()]
    assert cells_before == [t for t in after.text if t.strip()]
    assert {"0.30000000000000004", "007", "1e5", "NA", "null"} <= set(cells_before)
    assert "0.1235 [0.1000, 0.2000]" in after.by_class["metric-value"]
    # the JSON round-trips, and the CSV gives back the very same table
    assert render_report(load_report(index.parent)).document == document
    table = document["sections"][0]["blocks"][0]
    back = read_table(index.parent / table["file"], table["columns"])
    expected = frame.assign(note=["a, b", "line\nbreak", np.nan, "\"quoted\""])  # an empty cell is missing
    pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    assert back["score"].tolist()[:2] == [0.1 + 0.2, 1 / 3]  # bit-identical floats
    assert back["count"].dtype == np.int64 and back["flag"].dtype == bool
    metric = document["sections"][0]["blocks"][1]
    assert (metric["value"], metric["ci_low"], metric["ci_high"]) == (0.123456789, 0.1, 0.2)


def test_load_refuses_files_outside_the_report(tmp_path):
    index = write_report(Report("x", sections=[Section("s", "S", blocks=[Figure("f", _png())])]), tmp_path / "r")
    document = json.loads((index.parent / "report.json").read_text())
    document["sections"][0]["blocks"][0]["file"] = "../../etc/passwd"
    (index.parent / "report.json").write_text(json.dumps(document))
    with pytest.raises(ReportFormatError, match="outside the report folder"):
        rerender(index.parent)
    with pytest.raises(ReportFormatError, match="not found"):
        rerender(tmp_path / "nowhere")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "report.json").write_text("{not json")
    with pytest.raises(ReportFormatError, match="not readable JSON"):
        rerender(tmp_path / "junk")


def test_a_garbage_table_is_one_error_naming_the_file(tmp_path):
    index = write_report(Report("x", sections=[Section("s", "S", blocks=[Table("t", pd.DataFrame({"a": [1, 2]}))])]),
                         tmp_path / "r")
    table = next((index.parent / "tables").glob("*.csv"))
    table.write_bytes(b"\x00\xff\xfe\xfd garbage \xc3\x28")
    with pytest.raises(ReportFormatError, match=f"table .*{table.name}.* is not a readable CSV table"):
        rerender(index.parent)


# -- structure -------------------------------------------------------------------------------------

def test_contents_links_to_every_section(tmp_path):
    report = build_demo_report()
    report.add(Section("detectors", "A second section with a clashing id",
                       subsections=[Section("Nested / odd id!", "Nested")]))
    html = write_report(report, tmp_path / "r").read_text(encoding="utf-8")
    page = Page(html)
    section_ids = [a["id"] for t, a in page.tags if t == "section"]
    assert len(section_ids) == len(set(section_ids)) == 4 + 2 + 3  # demo, added, summary/caveats/provenance
    nav_start = html.index('<nav class="toc"')
    nav = Page(html[nav_start:html.index("</nav>", nav_start) + 6])
    links = [a["href"] for a in nav.attrs("a")]
    assert sorted(link.removeprefix("#") for link in links) == sorted(section_ids)
    assert all(re.fullmatch(r"#[a-z0-9-]+", link) for link in links)


def test_caveats_gather_sections_and_defaults(tmp_path):
    report = build_demo_report()
    report.sections[0].caveats.append(report.caveats[0])  # a repeat is shown once
    html = write_report(report, tmp_path / "r").read_text(encoding="utf-8")
    caveats = html[html.index('id="caveats"'):html.index('id="provenance"')]
    assert caveats.count("invented numbers; do not cite") == 1
    assert "Perceived gender presentation is not gender identity" in caveats
    assert "Who gets depicted:" in caveats  # labelled with the section it came from
    assert all(c.split(".")[0] in caveats for c in DEFAULT_CAVEATS)
    plain = render_report(Report("r", default_caveats=False)).html
    assert DEFAULT_CAVEATS[0].split(".")[0] not in plain


def test_long_tables_show_the_first_rows_and_point_at_the_csv(tmp_path):
    frame = pd.DataFrame({"x": range(120), "y": np.linspace(0, 1, 120)})
    report = Report("t", sections=[Section("s", "S", blocks=[
        Table("Long", frame, max_rows=10, name="long"), Table("Short", frame.head(3))])])
    index = write_report(report, tmp_path / "r")
    html = index.read_text(encoding="utf-8")
    tables = html.split('<table class="data">')[1:]
    body_rows = [t.split("<tbody>")[1].split("</tbody>")[0].count("<tr>") for t in tables]
    assert body_rows == [10, 3]
    assert "First 10 of 120 rows; full table in <a href=\"tables/long.csv\">tables/long.csv</a>." in html
    assert len(pd.read_csv(index.parent / "tables" / "long.csv")) == 120
    assert html.count("First ") == 1


def test_section_providers_plug_in():
    class Evaluation:
        def report_section(self) -> Section:
            return Section("eval", "Evaluation", blocks=[Metric("AUC", 0.9, 0.85, 0.95)])

    class Broken:
        def report_section(self):
            return "not a section"

    assert isinstance(Evaluation(), SectionProvider)
    report = Report("r", sections=[Evaluation()])
    report.add(Evaluation())
    assert [s.id for s in report.sections] == ["eval", "eval"]
    html = render_report(report).html
    assert 'id="eval"' in html and 'id="eval-2"' in html
    with pytest.raises(TypeError, match="not a Section"):
        Report("r", sections=[Broken()])
    with pytest.raises(TypeError):
        Report("r", sections=["just text"])


# -- numbers ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("metric, text", [
    (Metric("auc", 0.8734, 0.8211, 0.9102), "0.87 [0.82, 0.91]"),
    (Metric("t", 12.34, 11.02, 13.11, unit="s"), "12.3 s [11.0, 13.1]"),
    (Metric("fd", 465.2), "465"),
    (Metric("n", 1797), "1797"),
    (Metric("n", 25000, unit="images"), "25,000 images"),
    (Metric("tpr", 0.5412, 0.4801, 0.6003, fmt=".1%"), "54.1% [48.0%, 60.0%]"),
    (Metric("small", 0.0123, 0.0101, 0.0150), "0.012 [0.010, 0.015]"),
    (Metric("missing", float("nan"), unit="s"), "n/a"),
    (Metric("np", np.float32(0.5), np.float64(0.25), np.float64(0.75)), "0.50 [0.25, 0.75]"),
])
def test_metric_text(metric, text):
    assert format_metric(metric) == text


def test_metric_interval_is_kept_in_json(tmp_path):
    report = Report("r", highlights=[Metric("auc", 0.8734, 0.8211, 0.9102, note="bootstrap")])
    index = write_report(report, tmp_path / "r")
    document = json.loads((index.parent / "report.json").read_text())
    assert document["highlights"][0] | {} == {
        "type": "metric", "label": "auc", "value": 0.8734, "ci_low": 0.8211, "ci_high": 0.9102,
        "ci_level": 0.95, "unit": "", "note": "bootstrap", "fmt": None}
    html = index.read_text()
    assert "0.87</span> <span class=\"ci\"" in html and "[0.82, 0.91]" in html


def test_bad_blocks_fail_with_clear_messages(tmp_path):
    with pytest.raises(ValueError, match="both ci_low and ci_high"):
        Metric("x", 0.5, ci_low=0.4)
    with pytest.raises(ValueError, match="above ci_high"):
        Metric("x", 0.5, 0.6, 0.4)
    with pytest.raises(TypeError, match="expected a number"):
        Metric("x", "0.5")
    with pytest.raises(ValueError, match="unknown columns"):
        Table("t", pd.DataFrame({"a": [1]}), formats={"b": ".2f"})
    with pytest.raises(ValueError, match="duplicate column"):
        Table("t", pd.DataFrame([[1, 2]], columns=["a", "a"]))
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    with pytest.raises(ValueError, match="notes.png.*not a readable image"):
        Figure("f", not_an_image)
    with pytest.raises(ValueError, match="cannot read the file"):
        Figure("f", tmp_path / "missing.png")
    with pytest.raises(ValueError, match="image array"):
        Gallery("g", [np.zeros((2, 3, 4, 5))])
    with pytest.raises(TypeError, match="block must be"):
        Section("s", "S", blocks=["text"])


def test_images_from_arrays_and_other_formats(tmp_path):
    jpeg = tmp_path / "photo.jpg"
    Image.new("RGB", (20, 10), (200, 30, 30)).save(jpeg)
    gallery = Gallery("g", [
        np.zeros((1, 16, 16), dtype=np.float32),  # channel-first, like a torch tensor
        (np.full((16, 16, 3), 0.5), "rgb floats"),
        (np.ones((24, 24), dtype=bool), "mask"),
        (jpeg, "jpeg file"),
    ])
    sizes = []
    for item in gallery.images:
        assert item.image.startswith(b"\x89PNG")
        sizes.append(Image.open(io.BytesIO(item.image)).size)
    assert sizes == [(16, 16), (16, 16), (24, 24), (20, 10)]
    index = write_report(Report("r", sections=[Section("s", "S", blocks=[gallery])]), tmp_path / "r")
    page = Page(index.read_text())
    heights = [int(a["height"]) for a in page.attrs("img")]
    assert heights == [96, 96, 96, 48]  # the display size keeps the aspect ratio


def test_index_and_named_columns_survive(tmp_path):
    frame = pd.DataFrame({"auc": [0.9, 0.8]}, index=pd.Index(["cnn", "clip"], name="detector"))
    table = Table("t", frame)
    assert list(table.dataframe.columns) == ["detector", "auc"]
    filtered = pd.DataFrame({"a": range(5)}).iloc[[1, 3]]  # positions are not data
    assert list(Table("t", filtered).dataframe.columns) == ["a"]


# -- provenance ------------------------------------------------------------------------------------

def test_collect_provenance(tmp_path):
    record = collect_provenance({"seeds": {"train": 1}, "packages": {"extra-lib": "1.0"}},
                                started_at=__import__("time").time() - 5)
    for name in ("synthscope", "torch", "torchvision", "diffusers", "open_clip_torch", "scikit-learn",
                 "numpy", "pandas", "extra-lib"):
        assert name in record["packages"]
    assert record["packages"]["numpy"] == np.__version__
    assert record["machine"]["cpu_count"] >= 1 and record["machine"]["python"].split()[-1].count(".") == 2
    assert record["seeds"] == {"train": 1}
    assert 4 <= record["run_time_s"] < 60
    assert "created_at" in record and "started_at" in record
    json.dumps(record)
    data = tmp_path / "weights.bin"
    data.write_bytes(b"abc" * 1000)
    assert file_sha256(data) == "sha256:" + hashlib.sha256(b"abc" * 1000).hexdigest()


def test_provenance_is_shown_and_saved(tmp_path):
    report = Report("r", provenance={"seed": np.int64(3), "config": {"path": Path("/x/y"), "lr": 2e-3}})
    index = write_report(report, tmp_path / "r")
    document = json.loads((index.parent / "report.json").read_text())
    assert document["provenance"] == {"seed": 3, "config": {"path": "/x/y", "lr": 0.002}}
    section = index.read_text()[index.read_text().index('id="provenance"'):]
    assert "/x/y" in section and "0.002" in section


# -- plots -----------------------------------------------------------------------------------------

def test_plots_are_labelled_and_embed(tmp_path):
    from synthscope.reports.plots import interval_plot, line_plot
    from synthscope.reports.style import palette

    fig = interval_plot(["a $cost$", "b"], [0.2, 0.5], [0.1, 0.4], [0.3, 0.6], xlabel="share (0–1)",
                        reference=0.5)
    ax = fig.axes[0]
    assert ax.get_xlabel() == "share (0–1)"
    assert [t.get_text() for t in ax.get_yticklabels()] == [r"a \$cost\$", "b"]  # no math mode
    line = line_plot([1, 2, 3], {"x": [1, 2, 3], "y": [3, 2, 1]}, xlabel="step", ylabel="loss (nats)")
    assert line.axes[0].get_ylabel() == "loss (nats)" and len(line.axes[0].get_legend().get_texts()) == 2
    assert line.axes[0].lines[0].get_color() != line.axes[0].lines[1].get_color()
    assert tuple(line.axes[0].lines[0].get_color()) == palette(2)[0]
    with pytest.raises(ValueError, match="xlabel is required"):
        line_plot([1], {"x": [1]}, xlabel="", ylabel="y")
    figure = Figure.from_matplotlib(fig, "Shares")
    with Image.open(io.BytesIO(figure.png)) as image:
        assert image.format == "PNG" and image.size[0] > 300
