"""Decisions and actions the policy returns; the caller (simulator or service) applies them.

Times are seconds on the caller's clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

# The types made once per request (Placement, Enqueue, Dispatch, Finished) write out
# the __init__ the dataclass would generate (init=False): in the compiled build it is
# then a native function, not a Python one, about a third cheaper per object.
_set = object.__setattr__


@dataclass(frozen=True, slots=True, init=False)
class Placement:
    """Admitted and placed at once on ``gpu_id``; ``wait_s`` (0) and ``run_s`` are the
    estimated wait before start and run time there, in seconds (see ``estimate_times``)."""

    gpu_id: str
    wait_s: float = 0.0
    run_s: float = 0.0

    def __init__(self, gpu_id: str, wait_s: float = 0.0, run_s: float = 0.0) -> None:
        _set(self, "gpu_id", gpu_id)
        _set(self, "wait_s", wait_s)
        _set(self, "run_s", run_s)


@dataclass(frozen=True, slots=True, init=False)
class Enqueue:
    """Admitted and waiting; ``position`` is 1-based in dispatch order; ``gpu_id`` is set
    under early binding (the GPU whose queue holds it). ``wait_s`` and ``run_s`` are the
    estimated wait before start and run time, in seconds (see ``estimate_times``)."""

    position: int
    gpu_id: str | None = None
    wait_s: float = 0.0
    run_s: float = 0.0

    def __init__(
        self, position: int, gpu_id: str | None = None, wait_s: float = 0.0, run_s: float = 0.0
    ) -> None:
        _set(self, "position", position)
        _set(self, "gpu_id", gpu_id)
        _set(self, "wait_s", wait_s)
        _set(self, "run_s", run_s)


def estimate_times(
    duration_s: float, speed: float, position: int, slots_in_service: int, units: int = 1
) -> tuple[float, float]:
    """(wait_s, run_s) of an admitted request, in seconds: ``duration_s`` is its estimated
    run time on a speed-1.0 GPU, ``speed`` that of its GPU (1.0 when none is known yet),
    ``position`` its 1-based place in the queue (0: placed), ``units`` the slots it
    holds (``compute_units``). The wait is ``position`` times ``duration_s * units``
    (slot-seconds per place) shared over the ``slots_in_service`` (at least one)."""
    run_s = duration_s / max(speed, 1e-9)
    wait_s = position * duration_s * units / max(1, slots_in_service) if position else 0.0
    return wait_s, run_s


@dataclass(frozen=True, slots=True)
class Reject:
    """Refused. ``code`` is machine-readable (see ``RejectCode``); ``retry_after_s`` says
    when trying again can succeed (None: it never will as it stands)."""

    code: str
    reason: str
    retry_after_s: float | None = None


class RejectCode:
    """The reasons a request is refused."""

    INCOMPATIBLE: Final = "incompatible"  # no GPU in the fleet could ever serve it
    NO_CAPACITY: Final = "no_capacity"  # every compatible GPU is down right now
    QUEUE_FULL: Final = "queue_full"
    WAIT_TOO_LONG: Final = "wait_too_long"  # predicted wait above the priority's admission limit
    RATE_LIMITED: Final = "rate_limited"
    QUOTA_EXCEEDED: Final = "quota_exceeded"
    DUPLICATE: Final = "duplicate"


Decision = Placement | Enqueue | Reject


@dataclass(frozen=True, slots=True, init=False)
class Dispatch:
    """Start ``request_id`` on ``gpu_id`` now (the caller runs the work).

    With model locality on: ``model_id`` is the model to have resident; ``cold`` says
    the GPU must load it first (expected ``load_s`` seconds; a load already in flight
    there gives ``cold`` False and the seconds it still takes); ``evicted`` the models
    to unload first to make room, oldest first."""

    request_id: str
    gpu_id: str
    model_id: str | None = None
    load_s: float = 0.0
    cold: bool = False
    evicted: tuple[str, ...] = ()

    def __init__(
        self,
        request_id: str,
        gpu_id: str,
        model_id: str | None = None,
        load_s: float = 0.0,
        cold: bool = False,
        evicted: tuple[str, ...] = (),
    ) -> None:
        _set(self, "request_id", request_id)
        _set(self, "gpu_id", gpu_id)
        _set(self, "model_id", model_id)
        _set(self, "load_s", load_s)
        _set(self, "cold", cold)
        _set(self, "evicted", evicted)


@dataclass(frozen=True, slots=True)
class Abort:
    """Stop the work of ``request_id`` on ``gpu_id`` (cancelled, timed out, GPU taken away)."""

    request_id: str
    gpu_id: str
    reason: str


@dataclass(frozen=True, slots=True, init=False)
class Finished:
    """``request_id`` reached terminal ``state`` (a ``RequestState`` value); for callbacks."""

    request_id: str
    state: str
    error: str | None = None

    def __init__(self, request_id: str, state: str, error: str | None = None) -> None:
        _set(self, "request_id", request_id)
        _set(self, "state", state)
        _set(self, "error", error)


Action = Dispatch | Abort | Finished
