"""The ASGI factory served by plain uvicorn (not `gpu-router serve`): config from
$CONFIG_PATH, a virtual fleet from $GPU_ROUTER_VIRTUAL_GPUS, a route answered and run."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from .procs import ALICE, free_port, hdr, router_config, wait_http

pytestmark = pytest.mark.e2e


def test_uvicorn_factory_serves_the_api(tmp_path: Path) -> None:
    cfg = router_config(tmp_path, None)
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(cfg))
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("API_")}
    env |= {"CONFIG_PATH": str(tmp_path / "config.yaml"), "GPU_ROUTER_VIRTUAL_GPUS": "3"}
    log = open(tmp_path / "uvicorn.log", "wb")  # noqa: SIM115 - closed below
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "uvicorn",
            "--factory",
            "gpu_router.shim.http.asgi:app_from_env",
            "--http",
            "gpu_router.shim.http.asgi:GuardedProtocol",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health")
        assert httpx.get(f"{url}/health").json()["data"]["gpus_total"] == 3
        big = httpx.get(f"{url}/health", headers={"x-big": "a" * 20_000})  # the guarded protocol
        assert big.status_code == 431 and big.json()["error"]["code"] == "headers_too_large"
        body = {"request_id": "asgi-1", "user_id": "alice", "model_id": "m", "priority": 3}
        body["resource_requirements"] = {"expected_duration": 20}
        r = httpx.post(f"{url}/api/v1/route", json=body, headers=hdr(ALICE))
        assert r.status_code == 200, r.text
        assert r.json()["data"]["status"] in ("accepted", "queued")
        deadline = time.monotonic() + 10
        state = None
        while time.monotonic() < deadline and state != "completed":
            state = httpx.get(f"{url}/api/v1/requests/asgi-1", headers=hdr(ALICE)).json()
            state = state["data"]["status"]
            time.sleep(0.05)
        assert state == "completed"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


def test_factory_refuses_a_bad_fleet_size(tmp_path: Path) -> None:
    from gpu_router.shim.config import ConfigError
    from gpu_router.shim.http.asgi import app_from_env

    with pytest.raises(ConfigError, match="GPU_ROUTER_VIRTUAL_GPUS"):
        app_from_env({"GPU_ROUTER_VIRTUAL_GPUS": "0"})
    with pytest.raises(ConfigError, match="CONFIG_PATH"):
        app_from_env({"CONFIG_PATH": str(tmp_path / "missing.yaml")})
