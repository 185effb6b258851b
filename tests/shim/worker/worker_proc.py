"""A real `gpu-router worker` process (CPU mode) on loopback, for the worker's tests."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def worker_process(*extra: str) -> Iterator[str]:
    """Start a CPU-mode worker with ``extra`` arguments; its URL once /health says ok."""
    port = free_port()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gpu_router.cli",
            "worker",
            "--gpu",
            "0",
            "--port",
            str(port),
            "--mode",
            "cpu",
            *extra,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # the ready line, printed once the app serves
        ready = json.loads(line)
        assert ready["event"] == "worker_ready" and ready["mode"] == "cpu"
        assert ready["url"] == f"http://127.0.0.1:{port}"
        url = ready["url"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                    break
            time.sleep(0.05)
        yield url
    finally:
        proc.terminate()
        try:
            proc.communicate(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
