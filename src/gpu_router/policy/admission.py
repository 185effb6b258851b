"""Admission: whether a request may enter, and its record once it does.

In order: a duplicate id, no GPU that could ever serve it, the queue bound, the
predicted wait (``queue.admission_wait_s``), the user's quotas (a resumed request skips
the last three but takes its quota slots). Memory in MB, times in seconds.

The predicted wait: the request would take the place behind every request queued at
its priority or above (under early binding, behind every queued request); each place
costs its own estimated duration, shared over the slots in service
(``decisions.estimate_times``), and only the share of those slots that the work
admitted lately at higher priorities leaves free (``arrival_rates.WorkRates``): at
``rho`` higher-priority work-seconds per slot-second the wait grows by
``1 / (1 - rho)``, and is unbounded at ``rho >= 1``. It is 0 when nothing is ahead and
a compatible GPU can start it now. A refusal's retry time is the excess, ``wait -
limit`` (a request ``w`` s from its start is ``w - x`` s from it ``x`` s later), or the
rate window when the wait is unbounded.
"""

from __future__ import annotations

import math

from .arrival_rates import WorkRates
from .binding import Binder
from .decisions import Reject, RejectCode, estimate_times
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
        self.rates = WorkRates(self.config.queue.admission_rate_window_s)
        self._by_wait = self.config.queue.admission_wait_s is not None
        # the config is frozen: the common cases of ``_has_room`` and ``timeout_for``
        self._plain_room = not self.config.queue.loss and not state.early
        t = self.config.timeouts
        self._plain_timeouts = not t.by_type and not t.by_priority

    def admit(
        self, request: Request, now: float, *, resumed: bool = False
    ) -> RequestRecord | Reject:
        """The new record, registered as queued (not yet in a queue), or the refusal."""
        rid = request.request_id
        if rid in self.records:
            return Reject(RejectCode.DUPLICATE, f"request_id {rid} already exists")
        res, cfg, state = request.resources, self.config, self.state
        dm, dd, bs = res.memory_mb, res.expected_duration_ms / 1000.0, res.max_batch_size
        est = self.estimator
        if dm > 0 and dd > 0 and bs.__class__ is int and bs >= 1:
            if not est.config.learned_overrides_declared:  # ``sizes``' first case, inline
                memory, duration_s = float(dm), float(dd)
            else:
                memory, duration_s = est.sizes(request.model_id, request.type, bs, dm, dd)
        else:
            memory, duration_s = est.sizes(request.model_id, request.type, bs, dm, dd)
        memory += cfg.context_overhead_mb
        if not self.binder.compat_entry(request, memory)[1]:
            return Reject(RejectCode.INCOMPATIBLE, self._incompatible_reason(request, memory))
        if resumed:
            if cfg.quotas_enabled:
                self.quotas.restore(request.user_id, request.priority, now)
        elif not (
            state.queue.admits(request.priority, state.held)  # ``_has_room``, late binding
            if self._plain_room
            else self._has_room(request, memory)
        ):
            wait = max(1.0, duration_s * (1 + state.queue_length()) / max(1, self._slots_up()))
            return Reject(
                RejectCode.QUEUE_FULL, f"queue full for priority {request.priority}", round(wait, 3)
            )
        elif self._by_wait and (too_long := self._wait_refusal(request, memory, duration_s, now)):
            return too_long
        elif cfg.quotas_enabled:
            refusal = self.quotas.admit(request.user_id, request.priority, now)
            if refusal is not None:
                return Reject(refusal.code, refusal.reason, refusal.retry_after_s)
        if self._plain_timeouts:  # ``timeout_for`` with no table set
            timeout = request.timeout_s or cfg.default_timeout_s
        else:
            timeout = cfg.timeouts.timeout_for(
                request.timeout_s, request.type, request.priority, cfg.default_timeout_s
            )
        deadline = None if timeout is None else request.submitted_at + timeout
        units = res.compute_units
        if self._by_wait:
            self.rates.add(request.priority, duration_s * units, now)
        rec = RequestRecord(
            request, Q, memory, duration_s, deadline, units=units, timeout_s=timeout
        )
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
            return bool(self.binder.startable(request, memory).any())
        return state.queue.admits(request.priority, state.waiting_elsewhere())

    def predicted_wait(
        self, request: Request, memory: float, duration_s: float, now: float
    ) -> float:
        """Seconds ``request`` would wait if admitted now (``inf``: higher priorities
        take every slot); see the module docstring."""
        wait_s, ahead = self._queue_wait(request, duration_s, now)
        if not ahead and self._starts_now(request, memory):
            return 0.0
        return wait_s

    def _queue_wait(self, request: Request, duration_s: float, now: float) -> tuple[float, int]:
        """(the wait behind the queue, ignoring a free GPU; requests ahead)."""
        state, f = self.state, self.state.fleet
        ahead = state.queue_length() if state.early else state.queue.count_from(request.priority)
        slots = max(1, f.slots_available)
        rho = self.rates.above(request.priority, now) / slots
        if rho >= 1.0:
            return math.inf, ahead
        units = request.resources.compute_units
        wait_s, _run_s = estimate_times(duration_s, 1.0, ahead + 1, slots, units)
        return wait_s / (1.0 - rho), ahead

    def _starts_now(self, request: Request, memory: float) -> bool:
        return bool(self.state.fleet.open_count) and bool(
            self.binder.startable(request, memory).any()
        )

    def _wait_refusal(
        self, request: Request, memory: float, duration_s: float, now: float
    ) -> Reject | None:
        limits = self.config.queue.admission_wait_s
        assert limits is not None  # noqa: S101 - only called when admission by wait is on
        limit = limits[request.priority]
        wait_s, ahead = self._queue_wait(request, duration_s, now)
        if wait_s <= limit or (not ahead and self._starts_now(request, memory)):
            return None  # (the GPU check, a numpy mask, only when the queue says no)
        if wait_s == math.inf:
            retry, said = self.rates.window_s, "unbounded (higher priorities take every slot)"
        else:
            retry, said = wait_s - limit, f"{wait_s:.3g} s"
        return Reject(
            RejectCode.WAIT_TOO_LONG,
            f"predicted wait {said} exceeds {limit:g} s for priority {request.priority}",
            round(max(retry, 0.001), 3),
        )

    def _incompatible_reason(self, request: Request, memory: float) -> str:
        f = self.state.fleet
        return (
            f"no GPU can serve it: needs {memory:.0f} MB (largest {f.memory_total.max():.0f}"
            f" MB), compute capability >= {request.resources.min_compute_capability}, "
            f"type {request.type!r}, {request.resources.compute_units} compute unit(s)"
            f" (most slots {int(f.slots.max())})"
        )

    def _slots_up(self) -> int:
        """Slots of the GPUs the router has not taken out (for a queue-full retry time)."""
        f = self.state.fleet
        return int(f.slots[~f.down].sum())
