"""A rendered report in a real browser: it loads offline, draws, and asks for nothing over the network.

Drives Debian's headless Chromium over the DevTools protocol through ``--remote-debugging-pipe``
(requests on fd 3, replies on fd 4, NUL-separated JSON), so no Python package beyond the standard
library is needed. Skipped only when no Chromium binary is found (``apt-get install chromium``; or
point ``SYNTHSCOPE_CHROMIUM`` at a binary).
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import re
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pytest
from PIL import Image

from synthscope.reports import Metric, Section, Table, Text
from synthscope.reports.demo import build_demo_report


def _find_chromium() -> str | None:
    configured = os.environ.get("SYNTHSCOPE_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome"):
        found = shutil.which(name)
        if found:
            return found
    return None


CHROMIUM = _find_chromium()
pytestmark = [
    pytest.mark.skipif(CHROMIUM is None, reason="no Chromium binary found: install Debian's 'chromium' "
                                                "package or set SYNTHSCOPE_CHROMIUM"),
    pytest.mark.skipif(not hasattr(os, "posix_spawn"), reason="needs os.posix_spawn (Linux or macOS)"),
]

FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--remote-debugging-pipe",
]
TIMEOUT = 60.0
WIDTH, HEIGHT = 1200, 2000
LOCAL_SCHEMES = {"file", "data", "about"}
EVIL = "<script>alert(1)</script>"


class CDPError(RuntimeError):
    pass


class Chromium:
    """A headless Chromium process and a minimal DevTools-protocol client over its pipe."""

    def __init__(self, binary: str, profile: Path, log: Path) -> None:
        command_read, self._command_write = os.pipe()
        self._reply_read, reply_write = os.pipe()
        # posix_spawn places the pipe ends on fds 3 and 4 exactly as --remote-debugging-pipe expects.
        actions = [
            (os.POSIX_SPAWN_DUP2, command_read, 3),
            (os.POSIX_SPAWN_DUP2, reply_write, 4),
            (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
            (os.POSIX_SPAWN_OPEN, 1, str(log), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
            (os.POSIX_SPAWN_DUP2, 1, 2),
        ]
        argv = [binary, *FLAGS, f"--user-data-dir={profile}", "about:blank"]
        self.pid = os.posix_spawn(binary, argv, os.environ, file_actions=actions)
        os.close(command_read)
        os.close(reply_write)
        self.log = log
        self._next_id = 0
        self._inbox: queue.Queue[dict[str, Any] | None] = queue.Queue()
        self.events: list[dict[str, Any]] = []
        self._reader = threading.Thread(target=self._read_replies, daemon=True)
        self._reader.start()

    def _read_replies(self) -> None:
        buffer = b""
        while True:
            chunk = os.read(self._reply_read, 1 << 16)
            if not chunk:
                self._inbox.put(None)
                return
            buffer += chunk
            *messages, buffer = buffer.split(b"\0")
            for message in messages:
                self._inbox.put(json.loads(message))

    def _next(self, deadline: float) -> dict[str, Any]:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("Chromium did not answer in time; log:\n" + self.log.read_text()[-2000:])
        try:
            message = self._inbox.get(timeout=remaining)
        except queue.Empty:
            raise TimeoutError("Chromium did not answer in time; log:\n" + self.log.read_text()[-2000:]) from None
        if message is None:
            raise CDPError("Chromium closed the pipe; log:\n" + self.log.read_text()[-2000:])
        return message

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = None) -> dict[str, Any]:
        self._next_id += 1
        message: dict[str, Any] = {"id": self._next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        data = json.dumps(message).encode() + b"\0"
        while data:
            data = data[os.write(self._command_write, data):]
        deadline = time.monotonic() + TIMEOUT
        while True:
            reply = self._next(deadline)
            if reply.get("id") == self._next_id:
                if "error" in reply:
                    raise CDPError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            if "method" in reply:
                self.events.append(reply)

    def wait_for(self, method: str, session: str, start: int = 0) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT
        index = start
        while True:
            for event in self.events[index:]:
                if event["method"] == method and event.get("sessionId") == session:
                    return event
            index = len(self.events)
            message = self._next(deadline)
            if "method" in message:
                self.events.append(message)

    def close(self) -> None:
        try:
            self.send("Browser.close")
        except (CDPError, TimeoutError, OSError):
            pass
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if os.waitpid(self.pid, os.WNOHANG)[0]:
                break
            time.sleep(0.05)
        else:
            os.kill(self.pid, signal.SIGKILL)  # only the process this test started
            os.waitpid(self.pid, 0)
        os.close(self._command_write)


class Page:
    """What one page load showed: requests, console errors, a screenshot, and script results."""

    def __init__(self, browser: Chromium, url: str) -> None:
        self.browser = browser
        target = browser.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        self.target = target
        self.session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        start = len(browser.events)
        for domain in ("Page", "Runtime", "Log", "Network"):
            browser.send(f"{domain}.enable", session=self.session)
        browser.send("Emulation.setDeviceMetricsOverride",
                     {"width": WIDTH, "height": HEIGHT, "deviceScaleFactor": 1, "mobile": False},
                     session=self.session)
        browser.send("Page.navigate", {"url": url}, session=self.session)
        browser.wait_for("Page.loadEventFired", self.session, start)
        self.evaluate("new Promise(r => requestAnimationFrame(() => setTimeout(r, 50)))")  # late messages
        self.events = [e for e in browser.events[start:] if e.get("sessionId") == self.session]

    def evaluate(self, expression: str) -> Any:
        result = self.browser.send("Runtime.evaluate", {"expression": expression, "returnByValue": True,
                                                        "awaitPromise": True}, session=self.session)
        if "exceptionDetails" in result:
            raise CDPError(f"script failed: {result['exceptionDetails']}")
        return result["result"].get("value")

    @property
    def requests(self) -> list[str]:
        return [e["params"]["request"]["url"] for e in self.events if e["method"] == "Network.requestWillBeSent"]

    @property
    def errors(self) -> list[str]:
        found = []
        for event in self.events:
            params = event["params"]
            if event["method"] == "Runtime.consoleAPICalled" and params["type"] in ("error", "assert"):
                found.append("console: " + " ".join(str(a.get("value", a.get("description"))) for a in params["args"]))
            elif event["method"] == "Runtime.exceptionThrown":
                found.append("exception: " + params["exceptionDetails"].get("text", ""))
            elif event["method"] == "Log.entryAdded" and params["entry"]["level"] == "error":
                found.append(f"log ({params['entry']['source']}): {params['entry']['text']}")
            elif event["method"] == "Network.loadingFailed":
                found.append(f"load failed: {params.get('errorText')}")
        return found

    def screenshot(self) -> np.ndarray:
        data = self.browser.send("Page.captureScreenshot", {"format": "png"}, session=self.session)["data"]
        return np.asarray(Image.open(io.BytesIO(base64.b64decode(data))).convert("RGB"))

    def close(self) -> None:
        self.browser.send("Target.closeTarget", {"targetId": self.target})


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
    index = report.write(tmp_path_factory.mktemp("report") / "out dir with spaces & 'quotes'")
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
