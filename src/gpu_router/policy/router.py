"""The Router: admission, queueing, placement and failover as one state machine.

Every call carries ``now`` (seconds on the caller's clock) and returns the actions
the caller must apply (``Dispatch``, ``Abort``, ``Finished``); see
docs/architecture.md. The router keeps exact accounting of what it placed on each
GPU, so strategies never rely on lagged samples alone.

The state machine is split by concern: ``router_state`` (bookkeeping),
``dispatch`` (placement and binding loops), ``gpu_admin`` (GPU service state).
"""

from __future__ import annotations

import heapq

import numpy as np

from .decisions import Abort, Action, Decision, Enqueue, Placement, Reject
from .decisions import RejectCode as RC
from .dispatch import Dispatcher
from .gpu_admin import CRASHED, MAINTENANCE, GpuAdmin
from .records import RequestRecord
from .router_state import P, Q
from .strategies import Choice
from .types import Request, RequestState

__all__ = ["CRASHED", "MAINTENANCE", "Router"]

_NONE = np.empty(0, dtype=np.int64)


class Router(GpuAdmin, Dispatcher):
    """The policy core both the simulator and the service drive."""

    # -- queries ------------------------------------------------------------------

    def next_wakeup(self) -> float | None:
        """The earliest time ``tick`` has something to do (backoff, timeout, ejection end)."""
        while self._backoff and self._gone(self._backoff[0][2], backoff=True):
            heapq.heappop(self._backoff)
        times = [t for t, _s, _r in self._backoff[:1]]
        while self._deadlines and self._gone(self._deadlines[0][2]):
            heapq.heappop(self._deadlines)
        times += [t for t, _s, _r in self._deadlines[:1]]
        ejection = self.outlier.next_change(self._last_tick)
        if ejection is not None:
            times.append(ejection)
        return min(times) if times else None

    def _gone(self, request_id: str, *, backoff: bool = False) -> bool:
        """Whether a timer entry is stale: its request finished (or was forgotten), or,
        for a backoff, no longer waits one out."""
        rec = self.records.get(request_id)
        if rec is None:
            return True
        return rec.not_before is None if backoff else rec.state.terminal

    # -- admission ----------------------------------------------------------------

    def submit(
        self, request: Request, now: float, *, resumed: bool = False
    ) -> tuple[Decision, list[Action]]:
        """Admit or refuse ``request``; admitted ones are dispatched as soon as they fit.

        ``resumed`` re-admits a request acknowledged before a restart: it skips the
        queue bound and the quota checks (it was admitted once) but takes its quota slots.
        """
        if request.request_id in self.records:
            return Reject(RC.DUPLICATE, f"request_id {request.request_id} already exists"), []
        res = request.resources
        est = self.estimator.estimate(
            request.model_id,
            request.type,
            res.max_batch_size,
            res.memory_mb,
            request.expected_duration_s,
        )
        memory = est.memory_mb + self.config.context_overhead_mb
        if not self._compatible_any(request, memory):
            return Reject(RC.INCOMPATIBLE, self._incompatible_reason(request, memory)), []
        if resumed:
            if self.config.quotas_enabled:
                self.quotas.restore(request.user_id, request.priority, now)
        elif not self._admits(request, memory):
            wait = max(1.0, est.duration_s * (1 + self.queue_length) / max(1, self._slots_up()))
            return Reject(
                RC.QUEUE_FULL, f"queue full for priority {request.priority}", round(wait, 3)
            ), []
        elif self.config.quotas_enabled:
            refusal = self.quotas.admit(request.user_id, request.priority, now)
            if refusal is not None:
                return Reject(refusal.code, refusal.reason, refusal.retry_after_s), []
        timeout = request.timeout_s or self.config.default_timeout_s
        deadline = None if timeout is None else request.submitted_at + timeout
        rec = RequestRecord(request, Q, memory, est.duration_s, deadline)
        self.records[request.request_id] = rec
        self.counts[Q] += 1
        if deadline is not None:
            heapq.heappush(self._deadlines, (deadline, next(self._seq), request.request_id))
        if not self.early and not len(self.queue):
            # fast path: nothing waits, so this request is the head of the queue
            cands = self._feasible(rec).nonzero()[0] if self.fleet.open_count else _NONE
            if len(cands):
                i = self.strategy.choose(
                    Choice(request, rec.duration_s, self.fleet, cands, self.rng, now)
                )
                self._place(rec, i, now)
                return Placement(self.gpu_id(i)), [self._start_on(rec, i, now)]
        self.queue.push(request.request_id, request.user_id, request.priority, now)
        actions = self._dispatch(now)
        if rec.state is P:
            return Placement(self.gpu_id(rec.gpu_index)), actions  # type: ignore[arg-type]
        return self._enqueued(rec), actions

    def _enqueued(self, rec: RequestRecord) -> Enqueue:
        rid = rec.request.request_id
        if rec.gpu_index is not None and self.early:
            gq = self.gpu_queues[rec.gpu_index]
            return Enqueue(gq.position(rid), self.gpu_id(rec.gpu_index))
        return Enqueue(self.queue.position(rid) if rid in self.queue else 1)

    def _incompatible_reason(self, request: Request, memory: float) -> str:
        f = self.fleet
        return (
            f"no GPU can serve it: needs {memory:.0f} MB (largest {f.memory_total.max():.0f}"
            f" MB), compute capability >= {request.resources.min_compute_capability}, "
            f"type {request.type!r}"
        )

    def _slots_up(self) -> int:
        return int(self.fleet.slots[~self.fleet.down].sum())

    # -- lifecycle ----------------------------------------------------------------

    def start(self, request_id: str, now: float) -> list[Action]:
        """The worker began running the request."""
        rec = self.records.get(request_id)
        if rec is not None and rec.state is P and rec.started_at is None:
            rec.started_at = now
        return []

    def complete(self, request_id: str, now: float) -> list[Action]:
        """The request finished on its GPU. Late or repeated calls are ignored."""
        rec = self.records.get(request_id)
        if rec is None or rec.state is not P:
            return []
        i = self._release(rec, now)
        ran_s = now - (rec.started_at if rec.started_at is not None else rec.dispatched_at or now)
        if self.config.quotas_enabled:
            self.quotas.charge_gpu_time(rec.request.user_id, ran_s, now)
        req = rec.request
        self.estimator.observe(
            req.model_id, req.type, req.resources.max_batch_size, ran_s * self.fleet.speed[i]
        )
        self.outlier.record_success(self.gpu_id(i), now)
        return [self._finish(rec, RequestState.COMPLETED, now), *self._dispatch(now)]

    def fail(
        self, request_id: str, now: float, error: str, *, gpu_fault: bool = True
    ) -> list[Action]:
        """The work failed. Re-queue at the head of its priority after a backoff, or
        end ``failed`` once retries are spent. A GPU fault counts toward ejection."""
        rec = self.records.get(request_id)
        if rec is None or rec.state is not P:
            return []
        i = self._release(rec, now)
        actions: list[Action] = []
        if gpu_fault:
            gid = self.gpu_id(i)
            if self.outlier.record_failure(gid, now, self.fleet.size):
                self._ejected.add(i)
                actions += self._take_out(i, now, "ejected", requeue_running=False)
        actions += self._retry(rec, now, error, self.config.retry.backoff_s(rec.retries + 1))
        return actions + self._dispatch(now)

    def cancel(self, request_id: str, now: float, reason: str = "cancelled") -> list[Action]:
        """Cancel a request; cancelling twice is the same as once."""
        rec = self.records.get(request_id)
        if rec is None or rec.state.terminal:
            return []
        actions: list[Action] = []
        if rec.state is P:
            i = self._release(rec, now)
            actions.append(Abort(request_id, self.gpu_id(i), reason))
        else:
            self._unqueue(rec)
        actions.append(self._finish(rec, RequestState.CANCELLED, now, reason))
        return actions + self._dispatch(now)

    def tick(self, now: float) -> list[Action]:
        """Do what is due at ``now``: end retry backoffs, time out requests, end ejections."""
        actions: list[Action] = []
        self._last_tick = max(self._last_tick, now)
        while self._backoff and self._backoff[0][0] <= now:
            _t, _s, rid = heapq.heappop(self._backoff)
            rec = self.records.get(rid)  # None: finished and forgotten
            if rec is not None and rec.state is Q and rec.not_before is not None:
                rec.not_before = None
                self._held -= 1
                self._requeue_at_head(rec)
        while self._deadlines and self._deadlines[0][0] <= now:
            _t, _s, rid = heapq.heappop(self._deadlines)
            rec = self.records.get(rid)  # None: finished and forgotten
            if rec is None or rec.state.terminal:
                continue
            if rec.state is P:
                i = self._release(rec, now)
                actions.append(Abort(rid, self.gpu_id(i), "timeout"))
            else:
                self._unqueue(rec)
            actions.append(self._finish(rec, RequestState.FAILED, now, "timeout"))
        for i in sorted(self._ejected):
            if not self.outlier.is_ejected(self.gpu_id(i), now):
                self._ejected.discard(i)
                self._ramping.add(i)
                self._bring_back(i, "ejected")
        self._refresh_weights(now)
        return actions + self._dispatch(now)
