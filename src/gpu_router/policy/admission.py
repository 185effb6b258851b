"""Admission: whether a request may enter, and its record once it does.

In order: a duplicate id, no GPU that could ever serve it, the queue bound, the
user's quotas (a resumed request skips the last two but takes its quota slots).
Memory in MB, times in seconds.
"""

from __future__ import annotations

from .binding import Binder
from .decisions import Reject, RejectCode
from .estimator import ResourceEstimator
from .quota import QuotaManager
from .records import RequestRecord
from .router_state import Q, RouterState
from .types import Request


class Admission:
    """Admission control over the router's bookkeeping."""

    def __init__(
        self,
        state: RouterState,
        binder: Binder,
        quotas: QuotaManager,
        estimator: ResourceEstimator,
    ) -> None:
        self.state = state
        self.binder = binder
        self.quotas = quotas
        self.estimator = estimator
        self.config = state.config
        self.records = state.records

    def admit(
        self, request: Request, now: float, *, resumed: bool = False
    ) -> RequestRecord | Reject:
        """The new record, registered as queued (not yet in a queue), or the refusal."""
        rid = request.request_id
        if rid in self.records:
            return Reject(RejectCode.DUPLICATE, f"request_id {rid} already exists")
        res, cfg, state = request.resources, self.config, self.state
        memory, duration_s = self.estimator.sizes(
            request.model_id,
            request.type,
            res.max_batch_size,
            res.memory_mb,
            res.expected_duration_ms / 1000.0,  # request.expected_duration_s
        )
        memory += cfg.context_overhead_mb
        if not self.binder.compatible_any(request, memory):
            return Reject(RejectCode.INCOMPATIBLE, self._incompatible_reason(request, memory))
        if resumed:
            if cfg.quotas_enabled:
                self.quotas.restore(request.user_id, request.priority, now)
        elif not self._has_room(request, memory):
            wait = max(1.0, duration_s * (1 + state.queue_length()) / max(1, self._slots_up()))
            return Reject(
                RejectCode.QUEUE_FULL, f"queue full for priority {request.priority}", round(wait, 3)
            )
        elif cfg.quotas_enabled:
            refusal = self.quotas.admit(request.user_id, request.priority, now)
            if refusal is not None:
                return Reject(refusal.code, refusal.reason, refusal.retry_after_s)
        timeout = request.timeout_s or cfg.default_timeout_s
        deadline = None if timeout is None else request.submitted_at + timeout
        rec = RequestRecord(request, Q, memory, duration_s, deadline)
        self.records[rid] = rec
        state.counts[Q] += 1
        if deadline is not None:
            state.push_deadline(deadline, rid)
        return rec

    def _has_room(self, request: Request, memory: float) -> bool:
        """Room to admit: below the queue bound; in a loss system (``queue.max_size`` 0)
        only when it can start at once: nothing waits and a compatible GPU is open with
        ``memory`` MB free."""
        state = self.state
        if self.config.queue.loss:
            if state.queue_length():
                return False
            f = state.fleet
            mask = self.binder.compatible(request, memory) & f.open & (f.free_mb >= memory)
            return bool(mask.any())
        return state.queue.admits(request.priority, state.waiting_elsewhere())

    def _incompatible_reason(self, request: Request, memory: float) -> str:
        f = self.state.fleet
        return (
            f"no GPU can serve it: needs {memory:.0f} MB (largest {f.memory_total.max():.0f}"
            f" MB), compute capability >= {request.resources.min_compute_capability}, "
            f"type {request.type!r}"
        )

    def _slots_up(self) -> int:
        """Slots of the GPUs the router has not taken out (for a queue-full retry time)."""
        f = self.state.fleet
        return int(f.slots[~f.down].sum())
