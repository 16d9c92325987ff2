"""A real browser for page tests and documentation screenshots: headless Chromium driven over the
DevTools protocol through a pipe.

No extra package: Chromium's ``--remote-debugging-pipe`` reads JSON commands on fd 3 and writes replies
and events on fd 4, each message ended by a NUL byte. Clicks and key presses are real input events.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import itertools
import json
import os
import queue
import shutil
import subprocess
import tempfile
import threading
import time
from typing import Any, ClassVar


def chromium() -> str:
    """The Chromium executable. Missing: the page tests are skipped with the way to install it
    (`make chromium`), except under CI (``CI`` set), where they must run and a missing browser fails."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    message = "Chromium is not installed: `make chromium` installs it (apt-get install chromium)"
    if os.environ.get("CI"):
        raise AssertionError(message)
    import pytest

    pytest.skip(message)
    raise AssertionError(message)  # not reached


class Browser:
    """One headless Chromium with one page: open a file, evaluate JavaScript, click, type, screenshot."""

    def __init__(self, width: int = 1280, height: int = 1000) -> None:
        self.profile = tempfile.mkdtemp(prefix="cc-chromium-")
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def fds() -> None:  # the child sees the pipes as fds 3 (its input) and 4 (its output)
            a = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 100)
            b = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 100)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--no-default-browser-check", "--disable-extensions", "--remote-debugging-pipe",
             f"--user-data-dir={self.profile}", f"--window-size={width},{height}", "about:blank"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            preexec_fn=fds, close_fds=False,  # our pipes are not inheritable; only fds 3 and 4 reach the child
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._ids = itertools.count(1)
        self._replies: dict[int, queue.Queue[dict[str, Any]]] = {}
        self._lock = threading.Lock()
        self.events: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.session = self._attach(width, height)

    def _read(self) -> None:
        buf = b""
        while True:
            try:
                chunk = os.read(self._from_chrome, 1 << 16)
            except OSError:
                return
            if not chunk:
                return
            buf += chunk
            while b"\0" in buf:
                raw, buf = buf.split(b"\0", 1)
                msg = json.loads(raw)
                if "id" in msg:
                    with self._lock:
                        q = self._replies.setdefault(msg["id"], queue.Queue())
                    q.put(msg)
                else:
                    self.events.append(msg)

    def send(self, method: str, params: dict[str, Any] | None = None, session: str | None = "page",
             timeout: float = 60) -> dict[str, Any]:
        """Send one command (to the page's session, another session, or with ``session=None`` to the
        browser) and wait for its reply; an error reply raises."""
        i = next(self._ids)
        msg: dict[str, Any] = {"id": i, "method": method, "params": params or {}}
        if session is not None:
            msg["sessionId"] = self.session if session == "page" else session
        with self._lock:
            q = self._replies.setdefault(i, queue.Queue())
        os.write(self._to_chrome, json.dumps(msg).encode() + b"\0")
        reply = q.get(timeout=timeout)
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply.get("result", {})

    def _attach(self, width: int, height: int) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"},
                           session=None)
        session = self.send("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True},
                            session=None)["sessionId"]
        for domain in ("Page", "Runtime", "Network"):
            self.send(f"{domain}.enable", session=session)
        return session

    def open(self, url: str, ready: str = "document.querySelector('[data-ready=\"1\"]') !== null",
             timeout: float = 60) -> None:
        """Navigate and wait until ``ready`` (a JavaScript expression) is true."""
        self.send("Page.navigate", {"url": url})
        self.wait(ready, timeout)

    def eval(self, expression: str) -> Any:
        """The value of a JavaScript expression (promises awaited)."""
        res = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True, "awaitPromise": True})
        if "exceptionDetails" in res:
            raise RuntimeError(f"{expression}: {res['exceptionDetails']}")
        return res["result"].get("value")

    def wait(self, expression: str, timeout: float = 30) -> None:
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.eval(f"Boolean({expression})"):
                return
            time.sleep(0.05)
        raise AssertionError(f"timed out waiting for {expression}")

    def settled(self) -> str:
        """Wait for the viewer to finish rendering; the fingerprint of what it shows."""
        self.wait("document.querySelector('.cc-viewer').dataset.ready === '1'")
        time.sleep(0.1)
        self.wait("document.querySelector('.cc-viewer').dataset.ready === '1'")
        return self.eval("document.querySelector('.cc-viewer').dataset.fingerprint")

    def click(self, selector: str) -> None:
        """A real mouse click at the centre of the first element matching ``selector``."""
        box = self.eval(f"(() => {{ const e = document.querySelector({json.dumps(selector)});"
                        "e.scrollIntoView({block: 'center'}); const r = e.getBoundingClientRect();"
                        "return [r.x + r.width / 2, r.y + r.height / 2]; })()")
        self.eval("document.querySelector('.cc-viewer').dataset.ready = '0'")
        for kind in ("mousePressed", "mouseReleased"):
            self.send("Input.dispatchMouseEvent", {"type": kind, "x": box[0], "y": box[1], "button": "left",
                                                   "clickCount": 1})

    KEYS: ClassVar[dict[str, int]] = {"ArrowLeft": 37, "ArrowUp": 38, "ArrowRight": 39, "ArrowDown": 40,
                                      "Escape": 27, "Enter": 13}

    def key(self, key: str) -> None:
        """A real key press on the focused element."""
        code = self.KEYS.get(key, ord(key.upper()) if len(key) == 1 else 0)
        self.eval("document.querySelector('.cc-viewer').dataset.ready = '0'")
        base = {"key": key, "windowsVirtualKeyCode": code, "nativeVirtualKeyCode": code}
        self.send("Input.dispatchKeyEvent", {"type": "keyDown", **base, **({"text": key} if len(key) == 1 else {})})
        self.send("Input.dispatchKeyEvent", {"type": "keyUp", **base})

    def screenshot(self) -> bytes:
        return base64.b64decode(self.send("Page.captureScreenshot", {"format": "png"})["data"])

    def requests(self) -> list[str]:
        """The URL of every request the page made."""
        return [e["params"]["request"]["url"] for e in self.events if e.get("method") == "Network.requestWillBeSent"]

    def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may be gone already
            self.send("Browser.close", session=None, timeout=5)
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        os.close(self._to_chrome)
        shutil.rmtree(self.profile, ignore_errors=True)

    def __enter__(self) -> Browser:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
