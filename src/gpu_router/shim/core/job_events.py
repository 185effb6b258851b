"""The dispatcher's interface to the service: what to run, and what it hears back.

:class:`JobSpec` is one request's job as the dispatcher runs it; :class:`JobEvents` is
what the service implements to hear about it. Every event carries the attempt number the
service gave ``Dispatcher.start``, so the service can ignore an attempt it has given up
on. :func:`report_end` and :func:`report_error` turn a worker's answers into events, the
same for HTTP and in-process workers.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from gpu_router.shim.gpu_sources.base import (
    JOB_COMPLETED,
    JOB_FAILED,
    JOB_RUNNING,
    JobNotFound,
    JobStatus,
    SourceError,
    WorkerCallError,
    WorkerUnavailable,
)


@dataclass(frozen=True, slots=True)
class JobSpec:
    """One request's job: its payload, declared duration (ms) and memory (MB), and the
    job id the router chose for this attempt."""

    request_id: str
    payload: Any
    expected_duration_ms: float
    memory_mb: float
    traceparent: str | None = None
    job_id: str | None = None  # the router's id, ``{request_id}.{attempt}``
    #: model locality on: ``{id, memory_mb, evict}``, the model the worker must hold
    model: dict[str, Any] | None = None


@runtime_checkable
class JobEvents(Protocol):
    """What the dispatcher tells the service (the service implements this)."""

    def job_started(self, request_id: str, attempt: int, gpu_id: str, job_id: str) -> None:
        """The worker of ``gpu_id`` took the job (or an old one was re-attached)."""

    def job_progress(self, request_id: str, attempt: int, progress: float) -> None:
        """A poll saw the job running, ``progress`` in [0, 1]."""

    def job_completed(self, request_id: str, attempt: int, result: Any) -> None:
        """The job ended ``completed`` with ``result``."""

    def job_failed(self, request_id: str, attempt: int, error: str, gpu_fault: bool) -> None:
        """The job ended otherwise; ``gpu_fault``: the worker or GPU, not the request, failed."""

    def worker_down(self, gpu_id: str, reason: str) -> None:
        """The worker of ``gpu_id`` did not answer after the retries."""

    def model_loaded(self, request_id: str, attempt: int, seconds: float) -> None:
        """The job's worker loaded the job's model first, taking ``seconds``."""


def report_end(events: JobEvents, rid: str, attempt: int, st: JobStatus) -> bool:
    """Report a job's status if it has ended; whether it had."""
    state = st.get("state")
    load = st.get("model_load_s")
    if load and state != JOB_RUNNING:
        events.model_loaded(rid, attempt, float(load))
    if state == JOB_COMPLETED:
        events.job_completed(rid, attempt, st.get("result"))
    elif state == JOB_FAILED:
        events.job_failed(rid, attempt, str(st.get("error") or "job failed"), True)
    elif state != JOB_RUNNING:  # cancelled behind our back, or nonsense
        events.job_failed(rid, attempt, f"job ended {state!r} on the worker", False)
    else:
        return False
    return True


def report_error(events: JobEvents, rid: str, attempt: int, gpu_id: str, exc: SourceError) -> None:
    """Report a failed worker call: the worker down, the job lost, or the job refused."""
    if isinstance(exc, WorkerUnavailable):
        events.worker_down(gpu_id, f"worker unreachable: {exc}")
    elif isinstance(exc, JobNotFound):
        events.job_failed(rid, attempt, f"job lost by the worker of {gpu_id}", True)
    else:
        fault = isinstance(exc, WorkerCallError) and exc.worker_fault
        events.job_failed(rid, attempt, f"worker refused the job: {exc}", fault)
