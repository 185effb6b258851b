"""The Router: admission, queueing, placement and failover as one state machine.

Every call carries ``now`` (seconds on the caller's clock) and returns the actions
the caller must apply (``Dispatch``, ``Abort``, ``Finished``); see
docs/architecture.md. The router keeps exact accounting of what it placed on each
GPU, so strategies never rely on lagged samples alone.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from itertools import count

import numpy as np

from .config import RouterConfig
from .decisions import Abort, Action, Decision, Dispatch, Enqueue, Finished, Placement, Reject
from .decisions import RejectCode as RC
from .errors import InvalidValue
from .estimator import ResourceEstimator
from .fleet import FleetView
from .outlier import OutlierDetector
from .queue import CentralQueue
from .quota import QuotaManager
from .records import RequestRecord, RequestSnapshot
from .strategies import Choice, make_strategy
from .types import GpuState, Request, RequestState

Q, P = RequestState.QUEUED, RequestState.PROCESSING
#: why a GPU is out of service (any reason present keeps it out)
CRASHED, MAINTENANCE = "crashed", "maintenance"
_NONE = np.empty(0, dtype=np.int64)


class Router:
    """The policy core both the simulator and the service drive."""

    def __init__(self, gpus: Iterable[GpuState], config: RouterConfig | None = None,
                 rng: np.random.Generator | None = None) -> None:
        self.config = config = config or RouterConfig()
        self.fleet = FleetView(gpus)
        self.rng = rng if rng is not None else np.random.default_rng(0)
        self.strategy = make_strategy(config.strategy, config.strategy_options)
        self.quotas = QuotaManager(config.quotas)
        self.outlier = OutlierDetector(config.outlier)
        self.estimator = ResourceEstimator(config.estimator)
        self.queue = CentralQueue(config.queue)
        self.early = config.binding == "early"
        n = self.fleet.size
        self.gpu_queues = [CentralQueue(config.queue) for _ in range(n)] if self.early else []
        self.on_gpu: list[set[str]] = [set() for _ in range(n)]
        self.out_reasons: list[set[str]] = [set() for _ in range(n)]
        self._pending: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        self.records: dict[str, RequestRecord] = {}
        self._seq = count()
        self._backoff: list[tuple[float, int, str]] = []
        self._deadlines: list[tuple[float, int, str]] = []
        self._compat: dict[tuple[int, float, str], tuple[np.ndarray, bool]] = {}
        self.counts = dict.fromkeys(RequestState, 0)
        self._held = 0  # requests waiting out a retry backoff
        self._last_tick = float("-inf")
        self._ejected: set[int] = set()
        self._ramping: set[int] = set()  # back from ejection, weight still below 1

    # -- queries ------------------------------------------------------------------

    def record(self, request_id: str) -> RequestSnapshot:
        r = self.records[request_id]
        gid = None if r.gpu_index is None else self.fleet.gpu_ids[r.gpu_index]
        return RequestSnapshot(r.request, r.state, gid, r.dispatched_at, r.started_at,
                               r.finished_at, r.retries, r.error, r.memory_mb, r.duration_s)

    @property
    def queue_length(self) -> int:
        """Requests admitted and not yet dispatched (backoffs and GPU queues included)."""
        return len(self.queue) + self._waiting_elsewhere()

    def _waiting_elsewhere(self) -> int:
        """Admitted requests outside the central queue: backoffs and GPU queues."""
        return self._held + (int(self.fleet.queued.sum()) if self.early else 0)

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

    def forget(self, request_id: str) -> bool:
        """Drop the record of a finished request (its history lives with the caller, e.g.
        the service's journal). Returns False for unknown or unfinished requests."""
        rec = self.records.get(request_id)
        if rec is None or not rec.state.terminal:
            return False
        del self.records[request_id]
        self.counts[rec.state] -= 1
        return True

    def gpu_id(self, index: int) -> str:
        return self.fleet.gpu_ids[index]

    # -- admission ----------------------------------------------------------------

    def submit(self, request: Request, now: float, *, resumed: bool = False
               ) -> tuple[Decision, list[Action]]:
        """Admit or refuse ``request``; admitted ones are dispatched as soon as they fit.

        ``resumed`` re-admits a request acknowledged before a restart: it skips the
        queue bound and the quota checks (it was admitted once) but takes its quota slots.
        """
        if request.request_id in self.records:
            return Reject(RC.DUPLICATE, f"request_id {request.request_id} already exists"), []
        res = request.resources
        est = self.estimator.estimate(request.model_id, request.type, res.max_batch_size,
                                      res.memory_mb, request.expected_duration_s)
        memory = est.memory_mb + self.config.context_overhead_mb
        if not self._compatible_any(request, memory):
            return Reject(RC.INCOMPATIBLE, self._incompatible_reason(request, memory)), []
        if resumed:
            if self.config.quotas_enabled:
                self.quotas.restore(request.user_id, request.priority, now)
        elif not self.queue.admits(request.priority, self._waiting_elsewhere()):
            wait = max(1.0, est.duration_s * (1 + self.queue_length) / max(1, self._slots_up()))
            return Reject(RC.QUEUE_FULL, f"queue full for priority {request.priority}",
                          round(wait, 3)), []
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
            cands = np.flatnonzero(self._feasible(rec)) if self.fleet.open_count else _NONE
            if len(cands):
                i = self.strategy.choose(Choice(request, rec.duration_s, self.fleet, cands,
                                                self.rng, now))
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

    def _compatible(self, request: Request, memory: float) -> np.ndarray:
        return self._compat_entry(request, memory)[0]

    def _compatible_any(self, request: Request, memory: float) -> bool:
        return self._compat_entry(request, memory)[1]

    def _compat_entry(self, request: Request, memory: float) -> tuple[np.ndarray, bool]:
        """(mask of GPUs that could ever serve it, whether any can), cached per class."""
        cc = request.resources.min_compute_capability
        key = (0 if cc is None else cc[0] * 100 + cc[1], memory, request.type)
        entry = self._compat.get(key)
        if entry is None:
            mask = self.fleet.compatible(*key)
            if len(self._compat) > 4096:
                self._compat.clear()
            entry = self._compat[key] = (mask, bool(mask.any()))
        return entry

    def _incompatible_reason(self, request: Request, memory: float) -> str:
        f = self.fleet
        return (f"no GPU can serve it: needs {memory:.0f} MB (largest {f.memory_total.max():.0f}"
                f" MB), compute capability >= {request.resources.min_compute_capability}, "
                f"type {request.type!r}")

    def _slots_up(self) -> int:
        return int(self.fleet.slots[~self.fleet.down].sum())

    # -- dispatch -----------------------------------------------------------------

    def _dispatch(self, now: float) -> list[Action]:
        return self._dispatch_early(now) if self.early else self._dispatch_late(now)

    def _feasible(self, rec: RequestRecord) -> np.ndarray:
        """GPUs the request can start on now: compatible, open (up, free slot), memory."""
        f = self.fleet
        return self._compatible(rec.request, rec.memory_mb) & f.open & (f.free_mb >= rec.memory_mb)

    def _dispatch_late(self, now: float) -> list[Action]:
        """Place the first request in queue order that fits, and again while GPUs are
        open. Each pass restarts at the head (requests skipped before still do not fit:
        capacity only shrank), so no pass materialises the queue."""
        f = self.fleet
        actions: list[Action] = []
        while len(self.queue) and f.open_count:
            placed = None
            for rid in self.queue.ordered(now, self.config.dispatch_scan_limit):
                rec = self.records[rid]
                cands = np.flatnonzero(self._feasible(rec))
                if len(cands) == 0:
                    if self.queue.is_overdue(rid, now):
                        return actions  # hold the capacity for the aged request
                    continue
                placed = rec, self.strategy.choose(
                    Choice(rec.request, rec.duration_s, f, cands, self.rng, now))
                break  # the queue changes below: leave its iterator first
            if placed is None:
                break
            rec, i = placed
            self.queue.remove(rec.request.request_id, dispatched=True)
            self._place(rec, i, now)
            actions.append(self._start_on(rec, i, now))
        return actions

    def _dispatch_early(self, now: float) -> list[Action]:
        f = self.fleet
        actions: list[Action] = []
        avail = f.available()
        for rid in list(self.queue.ordered(now)):
            rec = self.records[rid]
            cands = np.flatnonzero(self._compatible(rec.request, rec.memory_mb) & avail)
            if len(cands) == 0:
                continue
            i = self.strategy.choose(Choice(rec.request, rec.duration_s, f, cands, self.rng, now))
            self.queue.remove(rid, dispatched=True)
            self._place(rec, i, now)
            f.queued[i] += 1
            self.gpu_queues[i].push(rid, rec.request.user_id, rec.request.priority, now)
        for gpu in np.flatnonzero(f.open & (f.queued > 0)):
            i = int(gpu)
            gq = self.gpu_queues[i]
            for rid in list(gq.ordered(now, self.config.dispatch_scan_limit)):
                if f.running[i] >= f.slots[i]:
                    break
                rec = self.records[rid]
                if f.free_mb[i] < rec.memory_mb:
                    if gq.is_overdue(rid, now):
                        break
                    continue
                gq.remove(rid, dispatched=True)
                f.queued[i] -= 1
                actions.append(self._start_on(rec, i, now))
        return actions

    def _place(self, rec: RequestRecord, i: int, now: float) -> None:
        """Charge a request's expected work to GPU ``i`` (queued or running there)."""
        rec.gpu_index = i
        rec.placed_s = rec.duration_s / self.fleet.speed[i]
        self.fleet.work_left_s[i] += rec.placed_s

    def _start_on(self, rec: RequestRecord, i: int, now: float) -> Dispatch:
        f = self.fleet
        f.occupy(i, rec.memory_mb)
        self._pending[i].append((now, rec.memory_mb))
        rid = rec.request.request_id
        self.on_gpu[i].add(rid)
        self._set_state(rec, P)
        rec.dispatched_at = now
        rec.dispatch_count += 1
        return Dispatch(rid, self.fleet.gpu_ids[i])

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
        self.estimator.observe(req.model_id, req.type, req.resources.max_batch_size,
                               ran_s * self.fleet.speed[i])
        self.outlier.record_success(self.gpu_id(i), now)
        return [self._finish(rec, RequestState.COMPLETED, now), *self._dispatch(now)]

    def fail(self, request_id: str, now: float, error: str, *, gpu_fault: bool = True
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
                self.queue.push(rid, rec.request.user_id, rec.request.priority,
                                rec.request.submitted_at, head=True)
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

    # -- GPUs ---------------------------------------------------------------------

    def observe(self, state: GpuState, now: float) -> list[Action]:
        """A monitor sample of one GPU; placements after ``state.sampled_at`` stay counted."""
        i = self._index(state.gpu_id)
        old = self.fleet.states[i]
        if (old.memory_total_mb, old.compute_capability, old.capabilities) != (
                state.memory_total_mb, state.compute_capability, state.capabilities):
            self._compat.clear()  # what could ever be served changed
        self.fleet.observe(i, state)
        pending = [(t, m) for t, m in self._pending[i] if t > state.sampled_at]
        self._pending[i] = pending
        self.fleet.pending_mb[i] = sum(m for _t, m in pending)
        return self._dispatch(now)

    def gpu_down(self, gpu_id: str, now: float, reason: str = CRASHED) -> list[Action]:
        """Hard failure (crash, critical Xid, uncorrectable ECC, unreachable): stop
        placing on it and re-queue its running requests at the head of their priority."""
        actions = self._take_out(self._index(gpu_id), now, CRASHED, requeue_running=True,
                                 error=reason)
        return actions + self._dispatch(now)

    def gpu_up(self, gpu_id: str, now: float) -> list[Action]:
        """The GPU passed its health checks again."""
        self._bring_back(self._index(gpu_id), CRASHED)
        return self._dispatch(now)

    def maintenance(self, gpu_id: str, now: float, reason: str = "maintenance") -> list[Action]:
        """Drain: no new placements; running requests finish; its queue moves back."""
        return self._take_out(self._index(gpu_id), now, MAINTENANCE, requeue_running=False)

    def restart(self, gpu_id: str, now: float) -> list[Action]:
        """Admin restart: abort and re-queue what runs there, clear maintenance, crash and
        ejection marks; the GPU takes work again at once (health checks may take it out)."""
        i = self._index(gpu_id)
        actions = self._take_out(i, now, "restart", requeue_running=True, error="gpu restart")
        self.out_reasons[i].clear()
        self._ejected.discard(i)
        self.fleet.set_down(i, False)
        return actions + self._dispatch(now)

    def is_out(self, gpu_id: str) -> set[str]:
        """Why a GPU takes no work (empty when it does)."""
        return set(self.out_reasons[self._index(gpu_id)])

    # -- internals ----------------------------------------------------------------

    def _index(self, gpu_id: str) -> int:
        try:
            return self.fleet.index[gpu_id]
        except KeyError:
            raise InvalidValue("gpu_id", gpu_id, "no such GPU") from None

    def _set_state(self, rec: RequestRecord, state: RequestState) -> None:
        self.counts[rec.state] -= 1
        self.counts[state] += 1
        rec.state = state

    def _finish(self, rec: RequestRecord, state: RequestState, now: float,
                error: str | None = None) -> Finished:
        self._set_state(rec, state)
        rec.finished_at = now
        rec.error = error
        if self.config.quotas_enabled:
            self.quotas.release(rec.request.user_id, rec.request.priority)
        return Finished(rec.request.request_id, state.value, error)

    def _release(self, rec: RequestRecord, now: float) -> int:
        """Free what a running request holds on its GPU; returns the GPU index."""
        i = rec.gpu_index
        assert i is not None  # noqa: S101 - a processing record always has a GPU
        f = self.fleet
        f.vacate(i, rec.memory_mb)
        f.work_left_s[i] = max(0.0, f.work_left_s[i] - rec.placed_s)
        self.on_gpu[i].discard(rec.request.request_id)
        return i

    def _unqueue(self, rec: RequestRecord) -> None:
        """Take a queued request out of whichever queue holds it."""
        rid = rec.request.request_id
        if not self.queue.remove(rid) and rec.gpu_index is not None and self.early:
            i = rec.gpu_index
            if self.gpu_queues[i].remove(rid):
                self.fleet.queued[i] -= 1
                self.fleet.work_left_s[i] = max(0.0, self.fleet.work_left_s[i] - rec.placed_s)
        if rec.not_before is not None:
            rec.not_before = None
            self._held -= 1

    def _retry(self, rec: RequestRecord, now: float, error: str, backoff_s: float
               ) -> list[Action]:
        rec.retries += 1
        rec.gpu_index = None
        if rec.retries > self.config.retry.max_retries:
            return [self._finish(rec, RequestState.FAILED, now, error)]
        self._set_state(rec, Q)
        rec.error = error
        rid = rec.request.request_id
        if backoff_s > 0:
            rec.not_before = now + backoff_s
            self._held += 1
            heapq.heappush(self._backoff, (rec.not_before, next(self._seq), rid))
        else:
            self.queue.push(rid, rec.request.user_id, rec.request.priority,
                            rec.request.submitted_at, head=True)
        return []

    def _take_out(self, i: int, now: float, reason: str, *, requeue_running: bool,
                  error: str = "") -> list[Action]:
        self.out_reasons[i].add(reason)
        self.fleet.set_down(i, True)
        actions: list[Action] = []
        if requeue_running:
            for rid in sorted(self.on_gpu[i]):
                rec = self.records[rid]
                self._release(rec, now)
                actions.append(Abort(rid, self.gpu_id(i), error or reason))
                actions += self._retry(rec, now, error or reason, 0.0)
        if self.early:
            gq = self.gpu_queues[i]
            for rid in list(gq.ordered(now)):
                rec = self.records[rid]
                gq.remove(rid)
                rec.gpu_index = None
                self.queue.push(rid, rec.request.user_id, rec.request.priority,
                                rec.request.submitted_at, head=True)
            self.fleet.queued[i] = 0
            self.fleet.work_left_s[i] = sum(self.records[r].placed_s for r in self.on_gpu[i])
        return actions

    def _bring_back(self, i: int, reason: str) -> None:
        self.out_reasons[i].discard(reason)
        self.fleet.set_down(i, bool(self.out_reasons[i]))

    def _refresh_weights(self, now: float) -> None:
        for i in sorted(self._ramping):
            w = self.outlier.weight(self.gpu_id(i), now)
            self.fleet.set_weight(i, max(w, 1e-3))
            if w >= 1.0:
                self._ramping.discard(i)
