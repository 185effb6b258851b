"""Metrics: Prometheus text at /metrics and the seed's JSON at /api/v1/metrics (6.3.5).

Each app owns its own ``CollectorRegistry`` (two apps in one process never share
counters). No metric carries a user_id label: users are unbounded. Per-user figures
appear only in the JSON metrics, which need an API key.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from gpu_router.shim.core.metrics_push import ShippingCounters

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
COMPLETION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600, 14400)
GPU_STATES = ("active", "inactive", "maintenance", "error")


class PromMetrics:
    """The Prometheus side."""

    def __init__(self) -> None:
        self.registry = r = CollectorRegistry(auto_describe=True)
        self.http_requests = Counter(
            "gpu_router_http_requests",
            "HTTP requests answered",
            ["method", "route", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "gpu_router_http_request_duration_seconds",
            "Time to answer an HTTP request",
            ["method", "route"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.submissions = Counter(
            "gpu_router_submissions",
            "POST /api/v1/route outcomes",
            ["outcome", "priority"],
            registry=r,
        )
        self.finished = Counter(
            "gpu_router_requests_finished",
            "Requests that reached a terminal state",
            ["status", "priority"],
            registry=r,
        )
        self.completion = Histogram(
            "gpu_router_request_latency_seconds",
            "Submission to terminal state",
            ["status", "priority"],
            buckets=COMPLETION_BUCKETS,
            registry=r,
        )
        self.queue_length = Gauge("gpu_router_queue_length", "Requests waiting", registry=r)
        self.active = Gauge("gpu_router_active_requests", "Requests running", registry=r)
        self.gpu_state = Gauge(
            "gpu_router_gpu_state", "1 for the GPU's current state", ["gpu_id", "state"], registry=r
        )
        self.gpu_running = Gauge(
            "gpu_router_gpu_running_requests", "Requests running on a GPU", ["gpu_id"], registry=r
        )
        self.gpu_util = Gauge(
            "gpu_router_gpu_utilization_percent", "Sampled utilization", ["gpu_id"], registry=r
        )
        self.gpu_mem = Gauge(
            "gpu_router_gpu_memory_used_mb", "Sampled memory in use", ["gpu_id"], registry=r
        )
        self.gpu_temp = Gauge(
            "gpu_router_gpu_temperature_celsius", "Sampled temperature", ["gpu_id"], registry=r
        )
        self.gpu_overheated = Gauge(
            "gpu_router_gpu_overheated",
            "1 while the GPU is above gpu_monitoring.max_temperature and takes no new work",
            ["gpu_id"],
            registry=r,
        )
        self.worker_failures = Counter(
            "gpu_router_worker_failures", "Worker calls that failed", ["gpu_id"], registry=r
        )
        self.callbacks = Counter(
            "gpu_router_callbacks", "Callback deliveries", ["outcome"], registry=r
        )
        self.journal_writer_process = Gauge(
            "gpu_router_journal_writer_process_up",
            "1 while the journal writer process commits; 0 once it died and the router "
            "commits on its event loop (or there is none: writer: loop, no WAL, :memory:)",
            registry=r,
        )
        self.model_cold_starts = Gauge(
            "gpu_router_model_cold_starts", "Placements that loaded their model", registry=r
        )
        self.model_warm_starts = Gauge(
            "gpu_router_model_warm_starts", "Placements that found their model", registry=r
        )
        self.model_memory = Gauge(
            "gpu_router_model_memory_mb", "Model weights resident over the fleet", registry=r
        )
        self.shipping = ShippingCounters()  # gpu_router_shipping_{sent,dropped}_total
        r.register(self.shipping)
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self._gpu_states: dict[str, str] = {}

    MAX_CACHED = 10_000  # label sets kept (every label here has a bounded set of values)

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, cached: ``labels()`` validates and hashes its
        arguments under a lock on every call, the cache is one dict lookup."""
        key = (id(metric), labels)
        c = self._children.get(key)
        if c is None:
            c = metric.labels(*labels)
            if len(self._children) < self.MAX_CACHED:
                self._children[key] = c
        return c

    def set_gpu_state(self, gpu_id: str, state: str) -> None:
        if self._gpu_states.get(gpu_id) == state:
            return
        self._gpu_states[gpu_id] = state
        for s in GPU_STATES:
            self.child(self.gpu_state, gpu_id, s).set(1.0 if s == state else 0.0)

    def text(self) -> bytes:
        return generate_latest(self.registry)


@dataclass
class _Agg:
    total: int = 0
    active: int = 0
    completed: int = 0
    failed: int = 0
    response_ms_sum: float = 0.0
    response_n: int = 0
    memory_mb_sum: float = 0.0
    gpu_s: float = 0.0
    finish_times: deque[float] = field(default_factory=lambda: deque(maxlen=10_000))

    @property
    def average_ms(self) -> float:
        return self.response_ms_sum / self.response_n if self.response_n else 0.0

    @property
    def success_rate(self) -> float:
        done = self.completed + self.failed
        return 100.0 * self.completed / done if done else 100.0


def _percentile(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return 0.0
    k = max(0, min(len(sorted_values) - 1, math.ceil(q * len(sorted_values)) - 1))
    return sorted_values[k]


class JsonStats:
    """Running figures behind the seed's JSON metrics (since this process started, plus
    the request totals found in the journal at start)."""

    THROUGHPUT_WINDOW_S = 60.0

    def __init__(self, window: int = 10_000) -> None:
        self.system = _Agg()
        self.gpus: dict[str, _Agg] = {}
        self.models: dict[str, _Agg] = {}
        self.users: dict[str, _Agg] = {}
        self.recent_ms: deque[float] = deque(maxlen=window)

    def _aggs(self, user: str, model: str) -> tuple[_Agg, _Agg, _Agg]:
        u = self.users.get(user) or self.users.setdefault(user, _Agg())
        m = self.models.get(model) or self.models.setdefault(model, _Agg())
        return self.system, u, m

    def accepted(self, user: str, model: str, memory_mb: float) -> None:
        for a in self._aggs(user, model):
            a.total += 1
            a.active += 1
            a.memory_mb_sum += memory_mb

    def withdrawn(self, user: str, model: str, memory_mb: float) -> None:
        """Undo :meth:`accepted` for a request that was not acknowledged after all."""
        for a in self._aggs(user, model):
            a.total -= 1
            a.active = max(0, a.active - 1)
            a.memory_mb_sum -= memory_mb

    def finished(
        self,
        user: str,
        model: str,
        gpu: str | None,
        state: str,
        response_ms: float,
        gpu_s: float,
        now: float,
    ) -> None:
        for a in self._aggs(user, model):
            a.active = max(0, a.active - 1)
            self._done(a, state, response_ms, gpu_s, now)
        if gpu is not None:
            self._done(
                self.gpus.get(gpu) or self.gpus.setdefault(gpu, _Agg()),
                state,
                response_ms,
                gpu_s,
                now,
            )
        if state == "completed":
            self.recent_ms.append(response_ms)

    @staticmethod
    def _done(a: _Agg, state: str, response_ms: float, gpu_s: float, now: float) -> None:
        if state == "completed":
            a.completed += 1
            a.response_ms_sum += response_ms
            a.response_n += 1
            a.finish_times.append(now)
        elif state == "failed":
            a.failed += 1
        a.gpu_s += gpu_s

    def throughput(self, agg: _Agg, now: float) -> float:
        recent = [t for t in agg.finish_times if t >= now - self.THROUGHPUT_WINDOW_S]
        return len(recent) / self.THROUGHPUT_WINDOW_S

    def percentiles(self) -> tuple[float, float]:
        values = sorted(self.recent_ms)
        return _percentile(values, 0.95), _percentile(values, 0.99)
