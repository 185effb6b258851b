"""Real processes on loopback for the end-to-end tests: reference workers and the router."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

ALICE = "alice-key-0123456789"
BOB = "bob-key-000123456789"
CAROL = "carol-key-0123456789"
ADMIN = "admin-key-0123456789"
KEYS = {"alice": ALICE, "bob": BOB, "carol": CAROL}


def hdr(key: str) -> dict[str, str]:
    return {"authorization": f"Bearer {key}"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "CONFIG_PATH"))}
    env.pop("GPU_MONITORING_URL", None)
    env.pop("LOGGING_URL", None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"  # CPU workers must not fight the router for the two cores
    return env


class Proc:
    def __init__(self, args: list[str], log: Path) -> None:
        self.args = args
        self.log_path = log
        self.log = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.p = subprocess.Popen(
            [sys.executable, "-m", "gpu_router.cli", *args],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=_env(),
        )

    def kill(self) -> None:
        if self.p.poll() is None:
            self.p.send_signal(signal.SIGKILL)
            self.p.wait(10)
        if not self.log.closed:
            self.log.close()

    def stop(self) -> None:
        if self.p.poll() is None:
            self.p.terminate()
            try:
                self.p.wait(10)
            except subprocess.TimeoutExpired:
                self.kill()
        if not self.log.closed:
            self.log.close()


def wait_http(
    url: str, timeout: float = 30.0, proc: Proc | None = None, ready: bool = True
) -> None:
    """Wait until ``url`` answers 200 (or, ``ready`` false, answers at all: a router
    that serves while ``/health`` says it is not ready, with no GPU in service)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.p.poll() is not None:
            raise RuntimeError(f"{proc.args} exited: {proc.log_path.read_text()[-2000:]}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200 or not ready:
                return
        time.sleep(0.05)
    raise TimeoutError(f"{url} not up after {timeout}s")


def start_worker(
    gpu: int, port: int, tmp: Path, *, wait: bool = True, extra: list[str] | None = None
) -> Proc:
    p = Proc(
        [
            "worker",
            *("--gpu", str(gpu), "--port", str(port), "--mode", "cpu", "--max-jobs", "4"),
            *(extra or []),
        ],
        tmp / f"worker{gpu}.log",
    )
    if not wait:
        return p
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc=p)
    except Exception:
        p.stop()
        raise
    return p


def router_config(tmp: Path, worker_ports: list[int] | None, **extra: Any) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "gpu_monitoring": {
            "source": "virtual",
            "virtual_gpus": len(worker_ports or [1, 2]),
            "update_interval": 0.1,
        },
        "auth": {
            "keys": [
                *({"key": k, "user_id": u} for u, k in KEYS.items()),
                {"key": ADMIN, "user_id": "ops", "role": "admin"},
            ]
        },
        "journal": {"path": str(tmp / "journal.sqlite3")},
        "user_quota_manager": {
            "default_request_limit": 1000,
            "default_priority_limit": 1000,
            "requests_per_minute": 100000,
            "requests_per_day": 1000,
        },
        "dispatch": {"poll_interval": 0.02, "max_poll_interval": 0.1, "health_probe_interval": 0.1},
        "request_router": {"max_retries": 1, "retry_delay": 0.05, "request_timeout": 5.0},
        "error_handler": {"retry_delay": 0.05, "max_retries": 5},
        "logging": {"level": "WARNING"},
    }
    if worker_ports:
        cfg["gpu_monitoring"]["worker_urls"] = {
            f"gpu-{i}": f"http://127.0.0.1:{p}" for i, p in enumerate(worker_ports)
        }
    for k, v in extra.items():
        cfg[k] = {**cfg.get(k, {}), **v} if isinstance(v, dict) else v
    return cfg


def start_router(
    tmp: Path,
    cfg: dict[str, Any],
    port: int | None = None,
    args: list[str] | None = None,
    *,
    ready: bool = True,
) -> tuple[Proc, str]:
    """``gpu-router serve`` with ``cfg`` (and more command-line ``args``); its URL, once
    ``/health`` answers 200 (``ready`` false: once it answers at all)."""
    port = port or free_port()
    path = tmp / "config.yaml"
    path.write_text(yaml.safe_dump(cfg))
    p = Proc(
        ["serve", "--config", str(path), "--host", "127.0.0.1", "--port", str(port), *(args or [])],
        tmp / "router.log",
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/health", proc=p, ready=ready)
    except Exception:
        p.stop()
        raise
    return p, url


def wait_terminal(
    client: httpx.Client, rids: list[str], headers: dict[str, str], timeout: float = 60.0
) -> dict[str, dict[str, Any]]:
    deadline = time.monotonic() + timeout
    done: dict[str, dict[str, Any]] = {}
    pending = list(rids)
    while pending and time.monotonic() < deadline:
        left = []
        for rid in pending:
            r = client.get(f"/api/v1/requests/{rid}", headers=headers)
            d = r.json()["data"]
            if d["status"] in ("completed", "failed", "cancelled"):
                done[rid] = d
            else:
                left.append(rid)
        pending = left
        if pending:
            time.sleep(0.1)
    assert not pending, f"{len(pending)} requests not terminal: {json.dumps(pending[:5])}"
    return done
