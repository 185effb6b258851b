"""Read-only views the Router hands out: one GPU, and the fleet in sum.

Callers (the service's API answers, metrics, health loop) read these instead of
the Router's bookkeeping. Each is a copy taken at the time of the call.
"""

from __future__ import annotations

from dataclasses import dataclass

from .gpu_service import MAINTENANCE, REMOVED
from .router_state import RouterState
from .types import GpuState


@dataclass(frozen=True, slots=True)
class GpuView:
    """One GPU as the router sees it now.

    ``state`` is the last monitor sample the router holds; ``running`` and
    ``queued`` are the router's own exact counts of what it placed there
    (``queued``: early binding only); ``request_ids`` the sorted ids running there;
    ``out_reasons`` why the router has it out of service (empty: in service);
    ``sampled_ok`` whether the last sample said active; ``status`` one word:
    "maintenance", "error" (out for any other reason) or the sampled status.
    """

    gpu_id: str
    state: GpuState
    speed: float
    slots: int
    running: int
    queued: int
    request_ids: tuple[str, ...]
    out_reasons: frozenset[str]
    sampled_ok: bool
    status: str


@dataclass(frozen=True, slots=True)
class FleetSummary:
    """The fleet in sum. ``in_service``: GPUs the router has not taken out;
    ``slots_in_service``: slots of those whose last sample also said active;
    ``running``: requests the router placed that run now; ``queued``: admitted
    requests not yet running (``Router.queue_length``)."""

    size: int
    in_service: int
    slots_in_service: int
    running: int
    queued: int


def gpu_status(out_reasons: frozenset[str] | set[str], state: GpuState) -> str:
    """ "inactive" for a GPU that left the fleet, "maintenance" if that is among the
    reasons, "error" for any other, else the sampled status."""
    if REMOVED in out_reasons:
        return "inactive"
    if MAINTENANCE in out_reasons:
        return "maintenance"
    if out_reasons:
        return "error"
    return state.status.value


def gpu_view(s: RouterState, i: int) -> GpuView:
    """The view of GPU ``i`` of ``s``'s fleet."""
    f = s.fleet
    state = f.states[i]
    out = frozenset(s.out_reasons[i])
    return GpuView(
        gpu_id=f.gpu_ids[i],
        state=state,
        speed=float(f.speed[i]),
        slots=int(f.slots[i]),
        running=len(s.on_gpu[i]),
        queued=int(f.queued[i]),
        request_ids=tuple(sorted(s.on_gpu[i])),
        out_reasons=out,
        sampled_ok=bool(f.status_ok[i]),
        status=gpu_status(out, state),
    )


def fleet_summary(s: RouterState) -> FleetSummary:
    """The summary of ``s``'s fleet now."""
    f = s.fleet
    return FleetSummary(
        size=f.size,
        in_service=int((~f.down).sum()),
        slots_in_service=slots_in_service(s),
        running=sum(len(on) for on in s.on_gpu),
        queued=s.queue_length(),
    )


def slots_in_service(s: RouterState) -> int:
    """Slots of the GPUs that may take work now (sampled active, not taken out)."""
    return s.fleet.slots_available
