"""The README's Quickstart, run as written (bash, loopback), and the hint that a router
with no keys logs."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from .procs import free_port, wait_http

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
README = Path(__file__).resolve().parents[2] / "README.md"


def quickstart_block() -> str:
    text = README.read_text()
    section = text.split("\n## Quickstart\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "the Quickstart has one bash block"
    return blocks[0]


def _env(port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "CONFIG_PATH"))}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["API_PORT"] = str(port)  # the router's port; the block's 8000 is replaced by it
    return env


def decode_all(text: str) -> list[dict]:
    out, dec, i = [], json.JSONDecoder(), 0
    while i < len(text):
        obj, i = dec.raw_decode(text, i)
        out.append(obj)
        while i < len(text) and text[i].isspace():
            i += 1
    return out


def test_readme_quickstart_runs(tmp_path):
    block = quickstart_block()
    commands = [ln for ln in block.splitlines() if ln and not ln.startswith(("  ", "#"))]
    assert len(commands) == 3, commands
    port = free_port()
    # the harness around the block: stop on the first error, stop the router at the end
    script = "set -e\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\n"
    script += block.replace("127.0.0.1:8000", f"127.0.0.1:{port}")
    p = subprocess.run(
        ["bash", "-c", script],
        cwd=tmp_path,
        env=_env(port),
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert p.returncode == 0, f"stdout: {p.stdout}\nstderr: {p.stderr[-3000:]}"
    route, status = decode_all(p.stdout)
    assert route["status"] == "success" and route["data"]["request_id"] == "hello-1"
    assert status["status"] == "success" and status["data"]["user_id"] == "alice"
    assert status["data"]["status"] in ("queued", "processing", "completed")
    assert (tmp_path / "keys.yaml").exists()


def test_serve_without_keys_logs_how_to_create_one(tmp_path):
    port = free_port()
    log = tmp_path / "router.log"
    with open(log, "wb") as out:
        p = subprocess.Popen(
            [sys.executable, "-m", "gpu_router.cli", "serve", "--virtual-gpus", "4"],
            cwd=tmp_path,
            env=_env(port),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            wait_http(f"http://127.0.0.1:{port}/health")
            r = httpx.get(f"http://127.0.0.1:{port}/api/v1/gpus")
            assert r.status_code == 401
            deadline = time.monotonic() + 5
            while "keys create" not in log.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
        finally:
            p.terminate()
            p.wait(10)
    text = log.read_text()
    assert "no API keys" in text
    assert "gpu-router keys create --user USER --file keys.yaml" in text
    assert "--keys-file keys.yaml" in text
