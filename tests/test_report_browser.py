"""A rendered report in a real browser: it loads offline, draws, and asks for nothing over the network.

Drives Debian's headless Chromium (see browser_harness.py). Skipped only when no Chromium binary is
found (``apt-get install chromium``; or point ``SYNTHSCOPE_CHROMIUM`` at a binary).
"""

from __future__ import annotations

import base64
import re
from urllib.parse import urlparse

import numpy as np
import pytest
from browser_harness import (
    CHROMIUM,
    HEIGHT,
    LOCAL_SCHEMES,
    WIDTH,
    Chromium,
    Page,
    skip_reason,
)
from synthscope.reports import Metric, Section, Table, Text, write_report
from synthscope.reports.demo import build_demo_report

pytestmark = pytest.mark.skipif(skip_reason() is not None, reason=skip_reason() or "")
EVIL = "<script>alert(1)</script>"


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory):
    folder = tmp_path_factory.mktemp("chromium")
    chromium = Chromium(CHROMIUM, folder / "profile", folder / "chromium.log")
    try:
        chromium.send("Browser.getVersion")
        yield chromium
    finally:
        chromium.close()


@pytest.fixture(scope="module")
def report_page(browser: Chromium, tmp_path_factory: pytest.TempPathFactory):
    report = build_demo_report()
    hostile = Section(EVIL, f"Hostile {EVIL} section", intro=f"A prompt: {EVIL}", blocks=[
        Text(f"Prompt text {EVIL} & \"quotes\""),
        Metric(f"label {EVIL}", 0.5, 0.4, 0.6, unit=EVIL),
        Table(EVIL, __import__("pandas").DataFrame({EVIL: [EVIL, "x"], "n": [1, 2]})),
    ])
    report.add(hostile)
    report.summary.append(f"Summary with markup {EVIL}")
    index = write_report(report, tmp_path_factory.mktemp("report") / "out dir with spaces & 'quotes'")
    page = Page(browser, index.resolve().as_uri())
    yield page, index
    page.close()


def test_page_loads_without_network_or_errors(report_page):
    page, index = report_page
    assert index.resolve().as_uri() in page.requests, "the request log must see the page itself"
    network = [url for url in page.requests if urlparse(url).scheme not in LOCAL_SCHEMES]
    assert network == []
    assert page.errors == []
    assert page.evaluate("document.querySelectorAll('script').length") == 0
    assert page.evaluate("document.title") == "synthscope demo report"


def test_screenshot_is_not_blank(report_page):
    page, _ = report_page
    pixels = page.screenshot()
    assert pixels.shape == (HEIGHT, WIDTH, 3)
    grey = pixels.mean(axis=2)
    assert grey.std() > 15, "the page looks blank"
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    assert len(np.unique(packed)) > 200, "too few colours for text, plots and images"
    assert (grey < 128).mean() > 0.01, "almost no dark pixels: no text was drawn"


def test_images_decode_and_galleries_are_pixelated(report_page):
    page, index = report_page
    html = index.read_text(encoding="utf-8")
    images = page.evaluate("Array.from(document.images).map(i => [i.complete, i.naturalWidth, i.naturalHeight])")
    assert len(images) == html.count("data:image/png;base64,") > 0
    assert all(complete and width > 0 and height > 0 for complete, width, height in images)
    tiles = page.evaluate("""Array.from(document.querySelectorAll('.gallery img')).map(i => [
        getComputedStyle(i).imageRendering, i.getBoundingClientRect().width, i.naturalWidth])""")
    assert tiles, "the demo report has galleries"
    for rendering, shown, natural in tiles:
        assert rendering == "pixelated"
        assert shown in (80, 72) and shown >= 3 * natural  # enlarged to the fixed display size


def test_contents_links_resolve_in_the_browser(report_page):
    page, _ = report_page
    missing = page.evaluate("""Array.from(document.querySelectorAll('nav.toc a')).map(a => a.getAttribute('href'))
        .filter(h => !h.startsWith('#') || !document.getElementById(decodeURIComponent(h.slice(1))))""")
    assert missing == []
    assert page.evaluate("document.querySelectorAll('nav.toc a').length") >= 8


def test_print_layout(report_page, browser):
    page, _ = report_page
    browser.send("Emulation.setEmulatedMedia", {"media": "print"}, session=page.session)
    try:
        position = page.evaluate("getComputedStyle(document.querySelector('nav.toc')).position")
        pdf = base64.b64decode(browser.send("Page.printToPDF", {}, session=page.session)["data"])
    finally:
        browser.send("Emulation.setEmulatedMedia", {"media": ""}, session=page.session)
    assert position == "static"
    assert pdf.startswith(b"%PDF") and len(re.findall(rb"/Type\s*/Page\b", pdf)) >= 2


def test_harness_catches_network_requests_and_console_errors(browser, tmp_path):
    """The checks above are only worth something if this harness sees what it looks for."""
    control = tmp_path / "control.html"
    control.write_text('<!doctype html><title>control</title><img src="http://127.0.0.1:9/probe.png">'
                       '<script>console.error("control error")</script>', encoding="utf-8")
    page = Page(browser, control.as_uri())
    try:
        assert "http://127.0.0.1:9/probe.png" in page.requests
        assert any("control error" in error for error in page.errors)
    finally:
        page.close()
