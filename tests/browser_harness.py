"""Headless Chromium over the DevTools protocol (``--remote-debugging-pipe``), standard library only.

Shared by the browser tests. Requests go on fd 3, replies come on fd 4, NUL-separated JSON.
"""

from __future__ import annotations

import base64
import io
import json
import os
import queue
import shutil
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image


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

def skip_reason() -> str | None:
    """Why browser tests cannot run here, or None."""
    if CHROMIUM is None:
        return "no Chromium binary found: install Debian's 'chromium' package or set SYNTHSCOPE_CHROMIUM"
    if not hasattr(os, "posix_spawn"):
        return "needs os.posix_spawn (Linux or macOS)"
    return None


FLAGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-extensions", "--disable-dev-shm-usage", "--mute-audio",
    "--remote-debugging-pipe",
]
TIMEOUT = 60.0
WIDTH, HEIGHT = 1200, 2000
LOCAL_SCHEMES = {"file", "data", "about"}


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
