"""The live side of the twin: ``gpu-router serve`` and one ``gpu-router worker`` per GPU,
real processes on 127.0.0.1, configured from the same scenario the simulator runs.

:func:`service_config` maps the scenario onto the service's config keys (fleet size,
strategy, binding, queue bound and waits; quotas out of reach), with the twin file's
``service`` keys on top. :class:`LiveService` starts the processes (workers in CPU mode,
each with a ``--job-log`` the twin reads afterwards), waits until each answers
``/health``, and stops them.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from ..sim import Scenario, parse_strategy
from .spec import QUEUE_KEYS, TwinError, fleet_size

SERVICE_KEY = "twin-service-key-0123456789"
BIG = 1_000_000_000


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    """``top`` over ``base``, mappings merged key by key."""
    out = dict(base)
    for k, v in top.items():
        out[k] = merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def service_config(
    sc: Scenario, strategy: str, worker_urls: list[str], journal: Path, extra: dict[str, Any]
) -> dict[str, Any]:
    """The service config that runs what ``sc`` and ``strategy`` describe."""
    name, opts = parse_strategy(strategy)
    opts = {**(sc.router.get("strategy_options") or {}), **opts}
    lb: dict[str, Any] = {"strategy": name}
    for key, value in opts.items():
        if key == "d" and name == "power-of-d":
            lb["d"] = value
        elif key == "weights" and name.startswith("hybrid"):
            lb["weights"] = value
        else:
            raise TwinError(f"strategy option {key}={value!r}: the service config has no such key")
    queue: dict[str, Any] = {"binding": sc.router.get("binding", "late")}
    for key, value in (sc.router.get("queue") or {}).items():
        queue[QUEUE_KEYS[key]] = value
    cfg: dict[str, Any] = {
        "gpu_monitoring": {
            "source": "virtual",
            "virtual_gpus": fleet_size(sc),
            "update_interval": sc.monitor.period_s,
            "worker_urls": {f"gpu-{i}": url for i, url in enumerate(worker_urls)},
        },
        "load_balancer": lb,
        "queue": queue,
        "auth": {"keys": [{"key": SERVICE_KEY, "user_id": "twin", "role": "service"}]},
        "user_quota_manager": {
            "default_gpu_limit": 1_000_000,
            "default_request_limit": 1_000_000,
            "default_priority_limit": 1_000_000,
            "requests_per_minute": 100_000_000,
            "requests_per_day": BIG,
        },
        "journal": {"path": str(journal)},
        "logging": {"level": "WARNING"},
    }
    return merge(cfg, extra)


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("API_", "CONFIG_PATH"))}
    for var in ("GPU_MONITORING_URL", "LOGGING_URL"):
        env.pop(var, None)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = "1"
    return env


class LiveService:
    """The router and its workers as subprocesses; ``url``, ``job_logs`` once started."""

    def __init__(self, directory: Path, sc: Scenario, strategy: str, extra: dict[str, Any]):
        self.dir = directory
        self.sc, self.strategy, self.extra = sc, strategy, extra
        self.procs: list[subprocess.Popen[bytes]] = []
        self.logs: list[Any] = []
        self.job_logs: list[Path] = []
        self.url = ""

    def _spawn(self, args: list[str], log: Path) -> subprocess.Popen[bytes]:
        out = open(log, "ab")  # noqa: SIM115 - closed in stop()
        self.logs.append(out)
        p = subprocess.Popen(
            [sys.executable, "-m", "gpu_router.cli", *args],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=_env(),
        )
        self.procs.append(p)
        return p

    def start(self, timeout_s: float = 60.0) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        workers = []
        for i in range(fleet_size(self.sc)):
            port = free_port()
            job_log = self.dir / f"jobs{i}.jsonl"
            self.job_logs.append(job_log)
            args = ["worker", "--gpu", str(i), "--port", str(port), "--mode", "cpu"]
            args += ["--max-jobs", "4", "--job-log", str(job_log), "--job-prefix", f"g{i}-"]
            p = self._spawn(args, self.dir / f"worker{i}.log")
            workers.append((f"http://127.0.0.1:{port}", p))
        cfg = service_config(
            self.sc,
            self.strategy,
            [u for u, _ in workers],
            self.dir / "journal.sqlite3",
            self.extra,
        )
        config = self.dir / "config.yaml"
        config.write_text(yaml.safe_dump(cfg))
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        router = self._spawn(
            ["serve", "--config", str(config), "--host", "127.0.0.1", "--port", str(port)],
            self.dir / "router.log",
        )
        deadline = time.monotonic() + timeout_s
        for url, p in [*workers, (self.url, router)]:
            _wait_up(f"{url}/health", p, deadline)

    def stop(self) -> None:
        for p in reversed(self.procs):
            if p.poll() is None:
                p.terminate()
        for p in self.procs:
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(10)
        for f in self.logs:
            f.close()

    def jobs(self) -> list[dict[str, Any]]:
        """Every worker's job-log lines: ``{event: start|end, job_id, request_id, t}``."""
        out = []
        for gpu, path in enumerate(self.job_logs):
            with contextlib.suppress(FileNotFoundError):
                out += [{**json.loads(line), "gpu": gpu} for line in path.read_text().splitlines()]
        return out


def _wait_up(url: str, proc: subprocess.Popen[bytes], deadline: float) -> None:
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise TwinError(f"{proc.args!r} exited with {proc.returncode} before {url} was up")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(url, timeout=1.0).status_code == 200:
                return
        time.sleep(0.1)
    raise TwinError(f"{url} not up in time")
