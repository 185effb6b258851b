"""What the router remembers about each request, and the snapshot it hands out."""

from __future__ import annotations

from dataclasses import dataclass

from .types import Request, RequestState


@dataclass(slots=True, init=False)
class RequestRecord:
    """Mutable bookkeeping of one request inside the Router (times in seconds).

    ``memory_mb`` is what the router reserves on the GPU; ``duration_s`` the
    estimated run time on a speed-1.0 GPU; ``placed_s`` the estimate charged to the
    GPU it was placed on (duration / speed, times ``units``: slot-seconds); ``units``
    the slots it holds while it runs (``compute_units``).
    """

    request: Request
    state: RequestState
    memory_mb: float
    duration_s: float
    deadline: float | None
    gpu_index: int | None = None
    placed_s: float = 0.0
    dispatched_at: float | None = None
    started_at: float | None = None
    finished_at: float | None = None
    retries: int = 0
    not_before: float | None = None
    error: str | None = None
    dispatch_count: int = 0
    units: int = 1
    timeout_s: float | None = None  # its timeout, for a fresh one after a timeout retry
    timeout_retries: int = 0

    # written out (the dataclass one would do the same), so that a compiled build makes
    # it a native constructor: one per admitted request
    def __init__(
        self,
        request: Request,
        state: RequestState,
        memory_mb: float,
        duration_s: float,
        deadline: float | None,
        gpu_index: int | None = None,
        placed_s: float = 0.0,
        dispatched_at: float | None = None,
        started_at: float | None = None,
        finished_at: float | None = None,
        retries: int = 0,
        not_before: float | None = None,
        error: str | None = None,
        dispatch_count: int = 0,
        units: int = 1,
        timeout_s: float | None = None,
        timeout_retries: int = 0,
    ) -> None:
        self.request = request
        self.state = state
        self.memory_mb = memory_mb
        self.duration_s = duration_s
        self.deadline = deadline
        self.gpu_index = gpu_index
        self.placed_s = placed_s
        self.dispatched_at = dispatched_at
        self.started_at = started_at
        self.finished_at = finished_at
        self.retries = retries
        self.not_before = not_before
        self.error = error
        self.dispatch_count = dispatch_count
        self.units = units
        self.timeout_s = timeout_s
        self.timeout_retries = timeout_retries


@dataclass(frozen=True, slots=True)
class RequestSnapshot:
    """A read-only copy of a record, for callers (API answers, sim output)."""

    request: Request
    state: RequestState
    gpu_id: str | None
    dispatched_at: float | None
    started_at: float | None
    finished_at: float | None
    retries: int
    error: str | None
    memory_mb: float
    duration_s: float

    @property
    def request_id(self) -> str:
        return self.request.request_id
