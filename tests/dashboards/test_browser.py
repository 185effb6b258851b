"""The dashboard in a real headless Chromium: `gpu-router dashboard` on loopback, a screenshot.

Chromium comes from scripts/install-system-deps.sh (run by `make test`); the test is
skipped, saying why, only where it is absent. Chromium is driven over its DevTools
protocol so that the shot is taken once the charts are really on the page. The
screenshot is kept under the test's tmp dir (copied to $DASHBOARD_SCREENSHOT if set).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.browser,
    pytest.mark.timeout(240),
    pytest.mark.skipif(
        CHROMIUM is None,
        reason="chromium not installed: run "
        "`bash scripts/install-system-deps.sh` (as root) to run the browser test",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_healthy(url: str, proc: subprocess.Popen, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"streamlit exited with {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:  # noqa: S310 (loopback http)
                if r.read().strip() == b"ok":
                    return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"{url} not healthy after {timeout} s")


FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    "--window-size=1400,1000",
]


class Browser:
    """Headless Chromium driven over the DevTools protocol, in real time.

    ``--screenshot`` with ``--virtual-time-budget`` is not enough for Streamlit: the
    page is filled over a websocket, which virtual time does not wait for, so the
    shot is often taken of the skeleton. Here we wait until the page really shows
    what we expect, then capture.
    """

    def __init__(self, profile: Path) -> None:
        self.proc = subprocess.Popen(
            [
                CHROMIUM,
                *FLAGS,
                f"--user-data-dir={profile}",
                "--remote-debugging-port=0",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        endpoint = ""
        deadline = time.monotonic() + 60
        while not endpoint and time.monotonic() < deadline:
            line = self.proc.stderr.readline()
            if not line and self.proc.poll() is not None:
                raise AssertionError(f"chromium exited with {self.proc.returncode}")
            if "DevTools listening on " in line:
                endpoint = line.split("DevTools listening on ", 1)[1].strip()
        port = endpoint.split(":")[2].split("/")[0]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/json/list", timeout=10) as r:
            page = next(t for t in json.load(r) if t["type"] == "page")
        from websockets.sync.client import connect

        self.stack = contextlib.ExitStack()
        self.ws = self.stack.enter_context(
            connect(page["webSocketDebuggerUrl"], max_size=None, open_timeout=20)
        )
        self.next_id = 0

    def call(self, method: str, **params):
        self.next_id += 1
        self.ws.send(json.dumps({"id": self.next_id, "method": method, "params": params}))
        while True:
            msg = json.loads(self.ws.recv(timeout=60))
            if msg.get("id") == self.next_id:
                if "error" in msg:
                    raise AssertionError(f"{method}: {msg['error']}")
                return msg.get("result", {})

    def evaluate(self, expression: str):
        return self.call("Runtime.evaluate", expression=expression, returnByValue=True)[
            "result"
        ].get("value")

    def wait_for(self, expression: str, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.evaluate(expression):
                return
            time.sleep(0.5)
        raise AssertionError(f"page never satisfied {expression!r}")

    def screenshot(self, path: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        path.write_bytes(base64.b64decode(data))

    def close(self) -> None:
        try:
            self.stack.close()
        finally:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)
            self.proc.stderr.close()


@pytest.fixture
def server(result_dir, tmp_path):
    port = free_port()
    log = (tmp_path / "streamlit.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "gpu_router.cli", "dashboard", str(result_dir), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, "STREAMLIT_BROWSER_GATHER_USAGE_STATS": "false"},
    )
    try:
        wait_healthy(f"http://127.0.0.1:{port}/_stcore/health", proc)
        yield f"http://127.0.0.1:{port}/"
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


CHARTS_READY = """(() => {
  const imgs = [...document.querySelectorAll('[data-testid="stImage"] img')];
  const running = document.querySelector('[data-testid="stStatusWidget"]');
  return imgs.length >= 4 && imgs.every(i => i.complete && i.naturalWidth > 0) && !running;
})()"""


def test_dashboard_renders_in_chromium(server, tmp_path):
    browser = Browser(tmp_path / "profile")
    try:
        browser.call("Page.enable")
        browser.call(
            "Emulation.setDeviceMetricsOverride",
            width=1400,
            height=1000,
            deviceScaleFactor=1,
            mobile=False,
        )
        browser.call("Page.navigate", url=server)
        browser.wait_for(CHARTS_READY)
        time.sleep(1.0)  # let the last paint land
        text = browser.evaluate("document.body.innerText")
        shot = tmp_path / "dashboard.png"
        browser.screenshot(shot)
    finally:
        browser.close()
    assert "GPU Request Router: strategy comparison" in text
    assert "Mean ± 95% CI over seeds" in text and "earliest-completion" in text
    assert "dash: 36 cells" in text

    from matplotlib.image import imread

    img = imread(shot)
    assert img.shape[:2] == (1000, 1400)
    colors = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colors) > 200, "the page looks blank"  # charts and tables, not a spinner
    if os.environ.get("DASHBOARD_SCREENSHOT"):
        shutil.copy(shot, os.environ["DASHBOARD_SCREENSHOT"])
