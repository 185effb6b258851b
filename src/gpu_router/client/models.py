"""Typed answers: the ``data`` of each envelope as a frozen dataclass.

Each model takes the fields it names from the answer and keeps the whole ``data`` in
``raw``, so fields the router adds later are still reachable.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, TypeVar

T = TypeVar("T")

TERMINAL = frozenset({"completed", "failed", "cancelled"})


def parse(cls: type[T], data: Any) -> T:
    """``cls`` from an answer's ``data`` (unknown keys stay in ``raw``)."""
    if not isinstance(data, dict):
        raise TypeError(f"expected an object for {cls.__name__}, got {type(data).__name__}")
    names = {f.name for f in dataclasses.fields(cls) if f.name != "raw"}  # type: ignore[arg-type]
    return cls(**{k: v for k, v in data.items() if k in names}, raw=data)  # type: ignore[call-arg]


@dataclass(frozen=True)
class RouteResult:
    request_id: str
    status: str  # accepted | queued
    message: str = ""
    assigned_gpu: str | None = None
    estimated_start_time: str | None = None
    estimated_completion_time: str | None = None
    queue_position: int | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class RequestStatus:
    request_id: str
    status: str  # queued | processing | completed | failed | cancelled
    user_id: str = ""
    model_id: str = ""
    priority: int = 0
    assigned_gpu: str | None = None
    submitted_time: str | None = None
    start_time: str | None = None
    completion_time: str | None = None
    duration: int | None = None  # ms
    progress: float = 0.0
    retries: int = 0
    result_url: str | None = None
    error: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class RequestResult:
    request_id: str
    status: str
    result: Any = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class CancelResult:
    request_id: str
    status: str
    cancelled: bool
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Gpu:
    gpu_id: str
    status: str
    name: str = ""
    compute_capability: str = ""
    memory: dict[str, int] = field(default_factory=dict)  # total, used, free (MB)
    utilization: dict[str, float] = field(default_factory=dict)
    temperature: float = 0.0
    power: dict[str, float] = field(default_factory=dict)
    performance_index: float = 0.0
    error_rate: float = 0.0
    active_requests: int = 0
    queued_requests: int = 0
    uptime: int = 0
    health_status: str = ""
    resident_models: list[str] = field(default_factory=list)  # model locality on
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class GpuList:
    timestamp: str
    gpus: list[Gpu]
    raw: dict[str, Any] = field(default_factory=dict, repr=False)

    @classmethod
    def from_data(cls, data: Any) -> GpuList:
        return cls(data["timestamp"], [parse(Gpu, g) for g in data["gpus"]], raw=data)


@dataclass(frozen=True)
class Quota:
    user_id: str
    quotas: dict[str, dict[str, int]]  # gpu_time, concurrent_requests, priority_requests
    rate_limits: dict[str, dict[str, Any]]  # requests_per_minute, requests_per_day
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Metrics:
    timestamp: str
    system: dict[str, Any]
    gpus: dict[str, Any] = field(default_factory=dict)
    models: dict[str, Any] = field(default_factory=dict)
    users: dict[str, Any] = field(default_factory=dict)
    #: model locality on: cold_starts, warm_starts, memory_used_mb; else None
    locality: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class Health:
    status: str  # healthy | unhealthy
    ready: bool
    live: bool = True
    version: str = ""
    gpus_total: int = 0
    gpus_active: int = 0
    queued_requests: int = 0
    active_requests: int = 0
    uptime: float = 0.0
    reason: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


@dataclass(frozen=True)
class AdminResult:
    target: str
    action: str
    status: str
    message: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)


QUOTA_FIELDS = {
    "gpu_time_minutes": "gpu_time_limit",
    "concurrent_requests": "concurrent_requests_limit",
    "priority_requests": "priority_requests_limit",
    "requests_per_minute": "requests_per_minute_limit",
    "requests_per_day": "requests_per_day_limit",
}
"""``set_quota`` keyword -> the body key of PUT /api/v1/admin/user/{id}/quota."""
