"""Immutable values the policy works on: requests, GPU snapshots, states (DESIGN 3.1).

Units: memory in MB, durations in milliseconds on the wire and seconds inside
the policy (``*_s`` fields), temperature in Celsius, power in watts, times
(``now``, ``submitted_at``) in seconds on the caller's clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from enum import Enum

from .errors import InvalidValue

MIN_PRIORITY = 1
MAX_PRIORITY = 5
PRIORITIES = tuple(range(MIN_PRIORITY, MAX_PRIORITY + 1))


_new = object.__new__
_set = object.__setattr__  # how a frozen dataclass's own __init__ sets its fields


class RequestType(str, Enum):
    """What a request does on the GPU."""

    INFERENCE = "inference"
    TRAINING = "training"
    FINE_TUNING = "fine-tuning"
    EMBEDDING = "embedding"
    BATCH = "batch"


class RequestState(str, Enum):
    """Where a request is in its life. Terminal states never change."""

    QUEUED = "queued"
    PROCESSING = "processing"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"
    REJECTED = "rejected"

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL


_TERMINAL = frozenset(
    {RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED, RequestState.REJECTED}
)


class GpuStatus(str, Enum):
    """Operational status of a GPU as the seed's API reports it."""

    ACTIVE = "active"
    INACTIVE = "inactive"
    MAINTENANCE = "maintenance"
    ERROR = "error"


def _finite(name: str, value: float, *, minimum: float | None = 0.0) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidValue(name, value, "must be a number")
    if not math.isfinite(value):
        raise InvalidValue(name, value, "must be finite")
    if minimum is not None and value < minimum:
        raise InvalidValue(name, value, f"must be >= {minimum}")


@dataclass(frozen=True, slots=True)
class ResourceRequirements:
    """Declared needs of a request. memory_mb in MB, expected_duration_ms in ms;
    compute_units: how many of a GPU's slots (its shares of compute) the request holds
    while it runs (the seed's "işlem gücü", processing power), an integer >= 1."""

    memory_mb: float = 0.0
    compute_units: int = 1
    max_batch_size: int = 1
    expected_duration_ms: float = 0.0
    min_compute_capability: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        _finite("resource_requirements.memory", self.memory_mb)
        _finite("resource_requirements.compute_units", self.compute_units, minimum=1)
        if not isinstance(self.compute_units, int):
            raise InvalidValue(
                "resource_requirements.compute_units", self.compute_units, "must be an integer"
            )
        _finite("resource_requirements.max_batch_size", self.max_batch_size, minimum=1)
        _finite("resource_requirements.expected_duration", self.expected_duration_ms)


@dataclass(frozen=True, slots=True)
class Request:
    """A compute request as the router admits it. timeout_s=None means no timeout."""

    request_id: str
    user_id: str
    model_id: str
    priority: int
    type: str = RequestType.INFERENCE.value
    resources: ResourceRequirements = field(default_factory=ResourceRequirements)
    timeout_s: float | None = None
    submitted_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.request_id:
            raise InvalidValue("request_id", self.request_id, "must not be empty")
        if not self.user_id:
            raise InvalidValue("user_id", self.user_id, "must not be empty")
        if isinstance(self.priority, bool) or not isinstance(self.priority, int):
            raise InvalidValue("priority", self.priority, "must be an integer")
        if not MIN_PRIORITY <= self.priority <= MAX_PRIORITY:
            raise InvalidValue("priority", self.priority, "must be between 1 and 5")
        if self.timeout_s is not None:
            _finite("timeout", self.timeout_s)
            if self.timeout_s <= 0:
                raise InvalidValue("timeout", self.timeout_s, "must be > 0")
        _finite("submitted_at", self.submitted_at, minimum=None)

    @classmethod
    def trusted(
        cls,
        request_id: str,
        user_id: str,
        model_id: str,
        priority: int,
        type: str,
        resources: ResourceRequirements,
        timeout_s: float | None,
        submitted_at: float,
    ) -> Request:
        """A request built without ``__post_init__``'s checks, for values validated where
        they entered (the simulator's workload columns): about half the cost."""
        r = _new(cls)
        _set(r, "request_id", request_id)
        _set(r, "user_id", user_id)
        _set(r, "model_id", model_id)
        _set(r, "priority", priority)
        _set(r, "type", type)
        _set(r, "resources", resources)
        _set(r, "timeout_s", timeout_s)
        _set(r, "submitted_at", submitted_at)
        return r

    @property
    def memory_mb(self) -> float:
        return self.resources.memory_mb

    @property
    def expected_duration_s(self) -> float:
        return self.resources.expected_duration_ms / 1000.0


@dataclass(frozen=True, slots=True)
class GpuState:
    """An immutable snapshot of one GPU as sampled at ``sampled_at`` (seconds).

    ``speed`` is throughput relative to the reference GPU (an H100 = 1.0);
    ``slots`` is how many requests may run on it at once (1 = exclusive).
    """

    gpu_id: str
    name: str = "GPU"
    compute_capability: tuple[int, int] = (9, 0)
    memory_total_mb: float = 81_559.0
    memory_used_mb: float = 0.0
    utilization_pct: float = 0.0
    temperature_c: float = 30.0
    power_w: float = 70.0
    power_limit_w: float = 700.0
    error_rate: float = 0.0
    performance_index: float = 0.5
    capabilities: frozenset[str] = frozenset(t.value for t in RequestType)
    status: GpuStatus = GpuStatus.ACTIVE
    speed: float = 1.0
    slots: int = 1
    sampled_at: float = 0.0

    def __post_init__(self) -> None:
        if not self.gpu_id:
            raise InvalidValue("gpu_id", self.gpu_id, "must not be empty")
        _finite("memory_total", self.memory_total_mb)
        if self.memory_total_mb <= 0:
            raise InvalidValue("memory_total", self.memory_total_mb, "must be > 0")
        _finite("memory_used", self.memory_used_mb)
        _finite("utilization", self.utilization_pct)
        if self.utilization_pct > 100:
            raise InvalidValue("utilization", self.utilization_pct, "must be <= 100")
        _finite("temperature", self.temperature_c, minimum=None)
        _finite("power", self.power_w)
        _finite("power_limit", self.power_limit_w)
        _finite("error_rate", self.error_rate)
        if self.error_rate > 1:
            raise InvalidValue("error_rate", self.error_rate, "must be <= 1")
        _finite("performance_index", self.performance_index)
        _finite("speed", self.speed)
        if self.speed <= 0:
            raise InvalidValue("speed", self.speed, "must be > 0")
        if isinstance(self.slots, bool) or not isinstance(self.slots, int) or self.slots < 1:
            raise InvalidValue("slots", self.slots, "must be an integer >= 1")

    @property
    def memory_free_mb(self) -> float:
        return max(0.0, self.memory_total_mb - self.memory_used_mb)
