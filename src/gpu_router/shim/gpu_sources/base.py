"""What every GPU state source offers the service, and the error signals it reports.

A source (NVML, the Monitoring Service, the virtual fleet) implements:

- ``period_s``: how often the service should call ``sample()``;
- ``async sample() -> list[GpuState]``: one snapshot per GPU, ``sampled_at`` on the
  source's clock (``time.monotonic`` unless one is passed in);
- ``drain_signals() -> list[ErrorSignal]``: error signals seen since the last call
  (Xid events, uncorrectable ECC, an unreachable GPU, a critical health report);
  hard ones mean "take this GPU out of service now" (``Router.gpu_down``);
- ``worker_url(gpu_id) -> str | None``: the HTTP worker of a GPU; ``None`` for
  virtual GPUs, whose in-process worker ``virtual_worker(gpu_id)`` returns;
- ``async aclose()``;
- ``clear(gpu_id)`` (all three sources have it; not part of the Protocol): forget latched
  hard signals of a GPU after an admin restart or a GPU reset. Without it an NVML GPU that
  had a critical Xid keeps reporting ``error``.

A worker, HTTP (``shim.worker.client.WorkerClient``) or virtual, offers the same job
API (:class:`JobRunner`): ``submit(request_id, payload, expected_duration_ms, memory_mb,
job_id=None) -> job_id`` (``job_id``: the router's stable id, ``{request_id}.{attempt}``;
a worker holding that id answers it and runs nothing again), ``status(job_id) ->
JobStatus`` (``state`` running|completed|failed|cancelled, ``progress`` 0-1, ``result``,
``error``), ``cancel(job_id)``, ``jobs(request_id=None) -> list[JobStatus]`` (every job
held: running, or finished and not acknowledged) and ``ack(job_ids)`` (the router has
their terminal state durably: the worker may forget them). A runner may
also offer ``wait(job_id, timeout) -> JobStatus``: the status once the job ends or
``timeout`` s have passed (the virtual worker does; the dispatcher then needs no separate
sleep per poll and sees a finished job at once). A call that fails raises a
:class:`WorkerCallError`, whose ``worker_fault`` says whether the worker (unreachable,
lost the job) or the request (refused) is to blame.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NotRequired, Protocol, TypedDict, runtime_checkable

from gpu_router.policy import GpuState, RouterError

#: Job states of the worker API; all but ``running`` are terminal.
JOB_RUNNING = "running"
JOB_COMPLETED = "completed"
JOB_FAILED = "failed"
JOB_CANCELLED = "cancelled"
JOB_TERMINAL = frozenset({JOB_COMPLETED, JOB_FAILED, JOB_CANCELLED})


def job_id_for(request_id: str, attempt: int) -> str:
    """The router's job id of a request's ``attempt`` (1, 2, ...): ``{request_id}.{attempt}``."""
    return f"{request_id}.{attempt}"


def attempt_of(request_id: str, job_id: str) -> int | None:
    """The attempt a job id of :func:`job_id_for` names for ``request_id``, else None."""
    head, dot, tail = job_id.rpartition(".")
    if dot and head == request_id and tail.isdigit():
        return int(tail)
    return None


class SourceError(RouterError):
    """A GPU source or worker could not do what was asked."""


class SourceUnavailable(SourceError):
    """The source has never produced a snapshot (NVML missing, service unreachable)."""


class WorkerCallError(SourceError):
    """A call of a worker's job API failed; the one type every worker client raises.

    ``worker_fault``: whether the worker is to blame (unreachable, 5xx, lost the job)
    rather than the request (refused with a 4xx). ``status``: the HTTP status, if any.
    """

    worker_fault = True

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class WorkerUnavailable(WorkerCallError):
    """The worker of a GPU cannot take or report work (crashed, unreachable, 5xx)."""


class JobNotFound(WorkerCallError, KeyError):
    """No job with that id on this worker."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else "job not found"


class JobRefused(WorkerCallError):
    """The worker refused the request (4xx other than 404): the request's fault."""

    worker_fault = False


class JobStatus(TypedDict):
    """A job as a worker reports it (``GET /jobs/{id}``; the virtual worker's ``status``)."""

    job_id: str
    request_id: str
    state: str  # JOB_RUNNING or one of JOB_TERMINAL
    progress: float  # 0-1
    result: Any
    error: str | None
    started_at: NotRequired[float | None]  # wall clock, s (HTTP worker only)
    finished_at: NotRequired[float | None]
    model_load_s: NotRequired[float]  # seconds the job waited for its model to load


class WorkerHealth(TypedDict, total=False):
    """The HTTP worker's ``GET /health`` answer (``models``: the ids it holds)."""

    models: list[str]

    status: str  # "ok" | "starting"
    gpu: int
    device_name: str
    mode: str  # "cuda" | "cpu"
    device: str  # "cuda:N" | "cpu"
    torch: str | None
    running: int  # jobs running now
    max_jobs: int


@dataclass(frozen=True, slots=True)
class ErrorSignal:
    """An error a source saw on one GPU at ``at`` (seconds on the source's clock).

    ``kind`` is a ``policy.health.HardSignal`` value for hard signals (``xid_critical``,
    ``ecc_uncorrectable``, ``unreachable``, ``crashed``) or one of ``xid``,
    ``ecc_corrected``, ``row_remap_pending``, ``row_remap_failure``, ``health_critical``,
    ``health_warning``, ``monitor_unreachable``. ``code`` is the Xid number for Xid events.
    """

    gpu_id: str
    kind: str
    hard: bool
    detail: str
    at: float
    code: int | None = None


@runtime_checkable
class JobRunner(Protocol):
    """The job API of a worker (HTTP or virtual).

    A router's job id is :func:`job_id_for` ``(request_id, attempt)``; an optional
    ``x-router-epoch`` header is reserved for fencing several routers (not sent yet)."""

    async def submit(
        self,
        request_id: str,
        payload: Any,
        expected_duration_ms: float,
        memory_mb: float,
        job_id: str | None = None,
        model: dict[str, Any] | None = None,
    ) -> str: ...

    async def status(self, job_id: str) -> JobStatus: ...

    async def cancel(self, job_id: str) -> None: ...

    async def jobs(self, request_id: str | None = None) -> list[JobStatus]: ...

    async def ack(self, job_ids: list[str]) -> None: ...


@runtime_checkable
class GpuSource(Protocol):
    """What the service needs from NVML, the Monitoring Service or the virtual fleet."""

    period_s: float

    async def sample(self) -> list[GpuState]: ...

    def drain_signals(self) -> list[ErrorSignal]: ...

    def worker_url(self, gpu_id: str) -> str | None: ...

    def virtual_worker(self, gpu_id: str) -> JobRunner: ...

    async def aclose(self) -> None: ...


class SignalLog:
    """Signals collected between two ``drain`` calls (bounded: the oldest are dropped)."""

    def __init__(self, limit: int = 10_000) -> None:
        self._items: list[ErrorSignal] = []
        self._limit = limit
        self.dropped = 0

    def add(self, signal: ErrorSignal) -> None:
        self._items.append(signal)
        if len(self._items) > self._limit:
            excess = len(self._items) - self._limit
            del self._items[:excess]
            self.dropped += excess

    def drain(self) -> list[ErrorSignal]:
        items, self._items = self._items, []
        return items


def static_worker_urls(urls: Mapping[str, str] | None) -> dict[str, str]:
    """Validate a ``gpu_id -> worker URL`` mapping from config."""
    out: dict[str, str] = {}
    for gpu_id, url in (urls or {}).items():
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise SourceError(f"worker_urls.{gpu_id}={url!r}: must be an http(s) URL")
        out[str(gpu_id)] = url.rstrip("/")
    return out


def positive_period(name: str, value: float) -> float:
    """A sampling period in seconds, > 0."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise SourceError(f"{name}={value!r}: must be a number of seconds > 0")
    return float(value)
