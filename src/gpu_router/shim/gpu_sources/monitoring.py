"""GPU state from the ALT_LAS GPU Monitoring Service (integration plan 2.2).

``GET {url}/gpus`` lists the GPUs (``{"gpus": [...]}``, the ALT_LAS envelope with
``data.gpus``, or a bare list); ``GET {url}/gpus/{id}/health`` reports one GPU's
health. The plan does not fix the item schema, so both shapes the design uses are read:

- the GPU status API of design 6.3.3: ``gpu_id``, ``name``, ``compute_capability``
  ("9.0"), ``status``, ``memory {total, used, free}`` in MB, ``utilization {gpu,
  memory}`` in %, ``temperature`` in C, ``power {usage, limit}`` in W,
  ``performance_index``, ``error_rate``, ``health_status``;
- the flat state of design 4.1 (``select_gpu``): ``memory_total``, ``memory_used``
  (bytes when above 10**7, since ``is_gpu_compatible`` compares them with
  ``min_memory_mb * 1024 * 1024``; MB otherwise), ``utilization_percent``,
  ``temperature``, ``power_usage``, ``power_limit``, ``error_rate``, ``capabilities``.

An item that cannot be read is skipped and counted (``skipped``), never fatal. A
``critical`` health (``health_status``/``status``) puts the GPU in ``error`` and is a
hard ``health_critical`` signal; ``warning`` is soft. A GPU that leaves the list is
reported ``inactive``. When the service does not answer: before the first good answer
``sample()`` raises ``SourceUnavailable``; afterwards it returns the last snapshots
unchanged (stale ``sampled_at``) and signals ``monitor_unreachable`` once per outage.
Health is fetched every ``health_period_s`` (config ``health_check_interval``).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import quote

import httpx

from gpu_router.policy import GpuState, GpuStatus, is_critical_xid

from .base import (
    ErrorSignal,
    JobRunner,
    SignalLog,
    SourceUnavailable,
    WorkerUnavailable,
    positive_period,
    static_worker_urls,
)

log = logging.getLogger(__name__)

_BYTES_ABOVE = 1e7  # a memory figure this large is in bytes, not MB
_CRITICAL = {"critical", "unhealthy", "error", "failed"}
_WARNING = {"warning", "degraded"}
_RANK = {"healthy": 0, "warning": 1, "critical": 2}


class MonitoringSource:
    """An httpx client of the GPU Monitoring Service; a ``GpuSource``."""

    def __init__(
        self,
        url: str,
        *,
        client: httpx.AsyncClient | None = None,
        period_s: float = 5.0,
        health_period_s: float = 60.0,
        timeout_s: float = 2.0,
        worker_urls: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_concurrency: int = 16,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise SourceUnavailable(f"gpu_monitoring.url={url!r}: must be an http(s) URL")
        self.url = url.rstrip("/")
        self.period_s = positive_period("period_s", period_s)
        self.health_period_s = positive_period("health_period_s", health_period_s)
        self._own_client = client is None
        self._client = client or httpx.AsyncClient(timeout=timeout_s)
        self._timeout = timeout_s
        self._urls = static_worker_urls(worker_urls)
        self._found_urls: dict[str, str] = {}
        self._clock = clock
        self._sem = asyncio.Semaphore(max_concurrency)
        self._signals = SignalLog()
        self._last: dict[str, GpuState] = {}
        self._health: dict[str, str] = {}  # gpu_id -> healthy | warning | critical
        self._reports: dict[tuple[str, str], str] = {}  # (gpu_id, where) -> level
        self._health_at: float | None = None
        self._outage = False
        self.skipped = 0

    # -- the source interface ----------------------------------------------------------

    async def sample(self) -> list[GpuState]:
        now = self._clock()
        try:
            items = await self._get_gpus()
        except (httpx.HTTPError, ValueError) as exc:
            return self._unreachable(now, exc)
        if self._outage:
            self._outage = False
            log.info("GPU Monitoring Service answers again")
        states: dict[str, GpuState] = {}
        for item in items:
            try:
                state, extras = parse_gpu(item, now)
            except (ValueError, TypeError, KeyError) as exc:
                self.skipped += 1
                log.warning("skipped a GPU item from the Monitoring Service: %s", exc)
                continue
            states[state.gpu_id] = state
            if extras.get("worker_url"):
                self._found_urls[state.gpu_id] = str(extras["worker_url"]).rstrip("/")
            self._set_health(state.gpu_id, extras.get("health"), now, "/gpus")
        if self._health_at is None or now - self._health_at >= self.health_period_s:
            self._health_at = now
            await self._fetch_health(list(states), now)
        out = []
        for gpu_id, state in states.items():
            if self._health.get(gpu_id) == "critical":
                state = replace(state, status=GpuStatus.ERROR, error_rate=1.0)
            out.append(state)
        for gpu_id, old in self._last.items():
            if gpu_id not in states:  # gone from the list
                out.append(replace(old, status=GpuStatus.INACTIVE, sampled_at=now))
        self._last = {g.gpu_id: g for g in out}
        return out

    def drain_signals(self) -> list[ErrorSignal]:
        return self._signals.drain()

    def worker_url(self, gpu_id: str) -> str | None:
        return self._urls.get(gpu_id) or self._found_urls.get(gpu_id)

    def virtual_worker(self, gpu_id: str) -> JobRunner:
        raise WorkerUnavailable(f"{gpu_id}: a monitored GPU has an HTTP worker, not a virtual one")

    def clear(self, gpu_id: str) -> None:
        """Forget the health reports of a GPU (after an admin restart); the next fetch of
        /gpus/{id}/health, due at the next sample, decides again."""
        self._reports.pop((gpu_id, "/gpus"), None)
        self._reports.pop((gpu_id, "/health"), None)
        self._health.pop(gpu_id, None)
        self._health_at = None

    async def aclose(self) -> None:
        if self._own_client:
            await self._client.aclose()

    # -- HTTP --------------------------------------------------------------------------------

    async def _get_gpus(self) -> list[Any]:
        r = await self._client.get(f"{self.url}/gpus", timeout=self._timeout)
        r.raise_for_status()
        body = _unwrap(r.json())
        items = body.get("gpus") if isinstance(body, dict) else body
        if not isinstance(items, list):
            raise ValueError("/gpus: no list of GPUs in the answer")
        return items

    async def _fetch_health(self, gpu_ids: list[str], now: float) -> None:
        async def one(gpu_id: str) -> None:
            async with self._sem:
                try:
                    r = await self._client.get(
                        f"{self.url}/gpus/{quote(gpu_id, safe='')}/health", timeout=self._timeout
                    )
                    if r.status_code == 404:
                        self._set_health(gpu_id, None, now, "/health")
                        return
                    r.raise_for_status()
                    level = parse_health(_unwrap(r.json()))
                except (httpx.HTTPError, ValueError) as exc:
                    log.debug("health of %s unavailable: %s", gpu_id, exc)
                    return
            self._set_health(gpu_id, level, now, "/health")

        await asyncio.gather(*(one(g) for g in gpu_ids))

    def _set_health(self, gpu_id: str, level: str | None, now: float, where: str) -> None:
        """Record one report; the GPU's level is the worst of /gpus and /health."""
        if level is None:
            self._reports.pop((gpu_id, where), None)
        else:
            self._reports[(gpu_id, where)] = level
        levels = [self._reports.get((gpu_id, w)) for w in ("/gpus", "/health")]
        worst = max((_RANK[v] for v in levels if v), default=0)
        level = ("healthy", "warning", "critical")[worst]
        before = self._health.get(gpu_id)
        self._health[gpu_id] = level
        if level != before and level in ("critical", "warning"):
            hard = level == "critical"
            kind = "health_critical" if hard else "health_warning"
            self._signals.add(ErrorSignal(gpu_id, kind, hard, f"health {level} in {where}", now))

    def _unreachable(self, now: float, exc: Exception) -> list[GpuState]:
        if not self._last:
            raise SourceUnavailable(f"GPU Monitoring Service at {self.url}: {exc}") from exc
        if not self._outage:
            self._outage = True
            log.warning("GPU Monitoring Service unreachable: %s", exc)
            for gpu_id in self._last:
                self._signals.add(
                    ErrorSignal(gpu_id, "monitor_unreachable", False, str(exc) or "no answer", now)
                )
        return list(self._last.values())


# -- parsing ------------------------------------------------------------------------------


def _unwrap(body: Any) -> Any:
    """The ALT_LAS envelope's ``data`` when the answer is one."""
    if isinstance(body, dict) and "data" in body and ("status" in body or "meta" in body):
        return body["data"]
    return body


def _num(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name}={value!r}: not a finite number")
    return float(value)


def _get(item: Mapping[str, Any], *paths: str) -> Any:
    """The first present value among dotted paths ("memory.total")."""
    for path in paths:
        node: Any = item
        for part in path.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            if node is not None:
                return node
    return None


def parse_cc(value: Any) -> tuple[int, int]:
    """ "9.0", "9", 9.0, [9, 0] or {"major": 9, "minor": 0} -> (9, 0)."""
    if isinstance(value, Mapping):
        return int(value["major"]), int(value.get("minor", 0))
    if isinstance(value, list | tuple) and 1 <= len(value) <= 2:
        return int(value[0]), int(value[1]) if len(value) == 2 else 0
    if isinstance(value, int | float) and not isinstance(value, bool):
        value = str(value)
    if isinstance(value, str):
        major, _, minor = value.strip().partition(".")
        if major.isdigit() and (minor.isdigit() or not minor):
            return int(major), int(minor or 0)
    raise ValueError(f"compute_capability={value!r}: not a version")


def _mb(value: Any, name: str) -> float:
    v = _num(value, name)
    return v / 2**20 if v > _BYTES_ABOVE else v


def parse_health(body: Any) -> str | None:
    """healthy | warning | critical from a health answer (None if it says nothing)."""
    if not isinstance(body, Mapping):
        return None
    level = _get(body, "health_status", "health", "status")
    xids = _get(body, "xid_errors", "xids")
    if isinstance(xids, list) and any(isinstance(x, int) and is_critical_xid(x) for x in xids):
        return "critical"
    if isinstance(level, str):
        level = level.lower()
        if level in _CRITICAL:
            return "critical"
        if level in _WARNING:
            return "warning"
        if level in ("healthy", "ok", "active"):
            return "healthy"
    return None


def parse_gpu(item: Any, now: float) -> tuple[GpuState, dict[str, Any]]:
    """One GPU item -> (GpuState, extras: worker_url, health). Raises ValueError if unreadable."""
    if not isinstance(item, Mapping):
        raise ValueError(f"GPU item {item!r}: not an object")
    gpu_id = _get(item, "gpu_id", "id")
    if not isinstance(gpu_id, str | int) or isinstance(gpu_id, bool) or str(gpu_id) == "":
        raise ValueError(f"gpu_id={gpu_id!r}: missing or not a string")
    values: dict[str, Any] = {"gpu_id": str(gpu_id), "sampled_at": now}
    name = _get(item, "name")
    if isinstance(name, str):
        values["name"] = name
    cc = _get(item, "compute_capability")
    if cc is not None:
        values["compute_capability"] = parse_cc(cc)
    total = _get(item, "memory.total", "memory_total_mb")
    used = _get(item, "memory.used", "memory_used_mb")
    if total is not None:
        values["memory_total_mb"] = _num(total, "memory.total")
    elif _get(item, "memory_total") is not None:
        values["memory_total_mb"] = _mb(_get(item, "memory_total"), "memory_total")
    if used is not None:
        values["memory_used_mb"] = _num(used, "memory.used")
    elif _get(item, "memory_used") is not None:
        values["memory_used_mb"] = _mb(_get(item, "memory_used"), "memory_used")
    elif total is not None and _get(item, "memory.free") is not None:
        values["memory_used_mb"] = max(
            0.0, values["memory_total_mb"] - _num(_get(item, "memory.free"), "memory.free")
        )
    util = _get(item, "utilization.gpu", "utilization_percent", "utilization")
    if util is not None:
        values["utilization_pct"] = min(100.0, max(0.0, _num(util, "utilization")))
    temp = _get(item, "temperature.gpu", "temperature")
    if temp is not None:
        values["temperature_c"] = _num(temp, "temperature")
    power = _get(item, "power.usage", "power_usage")
    if power is not None:
        values["power_w"] = max(0.0, _num(power, "power.usage"))
    limit = _get(item, "power.limit", "power_limit")
    if limit is not None:
        values["power_limit_w"] = max(0.0, _num(limit, "power.limit"))
    for key in ("error_rate", "performance_index"):
        v = _get(item, key)
        if v is not None:
            values[key] = min(1.0, max(0.0, _num(v, key)))
    caps = _get(item, "capabilities")
    if isinstance(caps, list) and all(isinstance(c, str) for c in caps):
        values["capabilities"] = frozenset(caps)
    status = _get(item, "status")
    if isinstance(status, str):
        try:
            values["status"] = GpuStatus(status.lower())
        except ValueError:
            values["status"] = GpuStatus.INACTIVE
    extras = {
        "worker_url": _get(item, "worker_url", "endpoint"),
        "health": parse_health({"health_status": _get(item, "health_status")}),
    }
    return GpuState(**values), extras
