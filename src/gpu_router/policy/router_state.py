"""The Router's bookkeeping: fleet, queues, request records, timers and counts.

``RouterState`` holds what the router tracks and the primitives that keep its
accounting exact (state counts, a GPU's memory and work in seconds, quota slots).
It decides nothing: ``Binder``, ``GpuService`` and ``Router`` are given it and
go through it for every transition. Times in seconds on the caller's clock.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Iterator
from itertools import count

from .config import RouterConfig
from .decisions import Action, Finished
from .errors import InvalidValue
from .fleet import FleetView
from .models import ModelRegistry
from .queue import CentralQueue
from .quota import QuotaManager
from .records import RequestRecord, RequestSnapshot
from .residency import ModelCache, Residency
from .types import GpuState, RequestState

# module constants: an Enum member looked up on its class, or its ``.value``, costs a
# Python-level call each time
Q, P = RequestState.QUEUED, RequestState.PROCESSING
COMPLETED, FAILED, CANCELLED = RequestState.COMPLETED, RequestState.FAILED, RequestState.CANCELLED
_VALUE = {s: s.value for s in RequestState}

#: a timer entry: (due time in seconds, tie-break sequence number, request id)
Timer = tuple[float, int, str]


class RouterState:
    """What the router tracks, and the accounting every transition goes through."""

    def __init__(self, gpus: Iterable[GpuState], config: RouterConfig, quotas: QuotaManager):
        self.config = config
        self.quotas = quotas
        self.fleet = FleetView(gpus)
        self.queue = CentralQueue(config.queue)
        self.early = config.binding == "early"
        n = self.fleet.size
        self.gpu_queues = [CentralQueue(config.queue) for _ in range(n)] if self.early else []
        self.on_gpu: list[set[str]] = [set() for _ in range(n)]
        self.out_reasons: list[set[str]] = [set() for _ in range(n)]
        #: per GPU, (dispatch time, MB) placed and not yet seen in a monitor sample
        self.pending: list[list[tuple[float, float]]] = [[] for _ in range(n)]
        self.records: dict[str, RequestRecord] = {}
        self.seq = count()
        self.backoff: list[Timer] = []
        self.deadlines: list[Timer] = []
        self.counts = dict.fromkeys(RequestState, 0)
        self.held = 0  # requests waiting out a retry backoff
        #: the Model Manager, and each GPU's resident models (None: locality off)
        self.model_registry = ModelRegistry(config.models)
        self.residency: Residency | None = None
        if config.models is not None:
            totals = self.fleet.memory_total.tolist()
            self.residency = Residency(totals, config.models.cache_share, self.model_registry)

    def add_gpu(self, g: GpuState) -> int:
        """A GPU joins the fleet at run time: its index (the last)."""
        i = self.fleet.append(g)
        self.on_gpu.append(set())
        self.out_reasons.append(set())
        self.pending.append([])
        if self.early:
            self.gpu_queues.append(CentralQueue(self.config.queue))
        models = self.config.models
        if self.residency is not None and models is not None:
            self.residency.caches.append(ModelCache(g.memory_total_mb * models.cache_share))
            self.residency.busy_until.append(0.0)
        return i

    # -- models -------------------------------------------------------------------

    def drop_models(self, i: int) -> None:
        """GPU ``i`` lost its memory (crash, restart): no model is resident there."""
        if self.residency is not None:
            self.residency.drop(i)

    def model_loaded(self, i: int, model_id: str, seconds: float, now: float) -> None:
        """GPU ``i`` loaded ``model_id`` in ``seconds``: learned, and ready there."""
        self.model_registry.observe_load(model_id, seconds)
        if self.residency is not None:
            self.residency.loaded(i, model_id, now)

    def report_models(self, i: int, models: list[str], taken_at: float) -> bool:
        """GPU ``i``'s worker reported its models (``Residency.reconcile``); whether the
        residency changed."""
        res, cfg = self.residency, self.config.models
        if res is None or cfg is None:
            return False
        return res.reconcile(i, models, taken_at, cfg.report_grace_s)

    # -- queries ------------------------------------------------------------------

    def snapshot(self, request_id: str) -> RequestSnapshot:
        """A read-only copy of one record (KeyError if unknown)."""
        r = self.records[request_id]
        gid = None if r.gpu_index is None else self.fleet.gpu_ids[r.gpu_index]
        return RequestSnapshot(
            r.request,
            r.state,
            gid,
            r.dispatched_at,
            r.started_at,
            r.finished_at,
            r.retries,
            r.error,
            r.memory_mb,
            r.duration_s,
        )

    def queue_length(self) -> int:
        """Requests admitted and not yet dispatched (backoffs and GPU queues included)."""
        return len(self.queue) + self.waiting_elsewhere()

    def waiting_elsewhere(self) -> int:
        """Admitted requests outside the central queue: backoffs and GPU queues."""
        return self.held + (int(self.fleet.queued.sum()) if self.early else 0)

    def forget(self, request_id: str) -> bool:
        """Drop a finished record; False for unknown or unfinished requests."""
        rec = self.records.get(request_id)
        if rec is None or not rec.state.terminal:
            return False
        del self.records[request_id]
        self.counts[rec.state] -= 1
        return True

    def gpu_id(self, index: int) -> str:
        return self.fleet.gpu_ids[index]

    def index(self, gpu_id: str) -> int:
        """The fleet index of ``gpu_id``; InvalidValue if there is no such GPU."""
        try:
            return self.fleet.index[gpu_id]
        except KeyError:
            raise InvalidValue("gpu_id", gpu_id, "no such GPU") from None

    # -- timers -------------------------------------------------------------------

    def push_deadline(self, due: float, request_id: str) -> None:
        heapq.heappush(self.deadlines, (due, next(self.seq), request_id))

    def next_timer(self) -> float | None:
        """The earliest live backoff end or deadline; drops stale entries on the way."""
        backoff, deadlines = self.backoff, self.deadlines
        while backoff and self._gone(backoff[0][2], backoff=True):
            heapq.heappop(backoff)
        while deadlines and self._gone(deadlines[0][2]):
            heapq.heappop(deadlines)
        if not deadlines:
            return backoff[0][0] if backoff else None
        if not backoff:
            return deadlines[0][0]
        return min(backoff[0][0], deadlines[0][0])

    def _gone(self, request_id: str, *, backoff: bool = False) -> bool:
        """Whether a timer entry is stale: its request finished (or was forgotten), or,
        for a backoff, no longer waits one out."""
        rec = self.records.get(request_id)
        if rec is None:
            return True
        return rec.not_before is None if backoff else rec.state.terminal

    # -- accounting ---------------------------------------------------------------

    def set_state(self, rec: RequestRecord, state: RequestState) -> None:
        self.counts[rec.state] -= 1
        self.counts[state] += 1
        rec.state = state

    def finish(
        self, rec: RequestRecord, state: RequestState, now: float, error: str | None = None
    ) -> Finished:
        """End a request in terminal ``state`` and free its quota slots."""
        self.set_state(rec, state)
        rec.finished_at = now
        rec.error = error
        if self.config.quotas_enabled:
            self.quotas.release(rec.request.user_id, rec.request.priority)
        return Finished(rec.request.request_id, _VALUE[state], error)

    def release(self, rec: RequestRecord, now: float) -> int:
        """Free what a running request holds on its GPU; returns the GPU index."""
        i = rec.gpu_index
        assert i is not None  # noqa: S101 - a processing record always has a GPU
        f = self.fleet
        f.vacate(i, rec.memory_mb, rec.units)
        f.take_work(i, rec.placed_s)
        self.on_gpu[i].discard(rec.request.request_id)
        if self.residency is not None:
            self.residency.finish(i, rec.request.model_id, now, idle=not f.running_list[i])
        return i

    def unqueue(self, rec: RequestRecord) -> None:
        """Take a queued request out of whichever queue holds it."""
        rid = rec.request.request_id
        if not self.queue.remove(rid) and rec.gpu_index is not None and self.early:
            i = rec.gpu_index
            if self.gpu_queues[i].remove(rid):
                self.fleet.queued[i] -= 1
                self.fleet.take_work(i, rec.placed_s)
        if rec.not_before is not None:
            rec.not_before = None
            self.held -= 1

    def requeue_at_head(self, rec: RequestRecord) -> None:
        """Back into the central queue at the head of its priority (retries, GPUs lost)."""
        req = rec.request
        self.queue.push(req.request_id, req.user_id, req.priority, req.submitted_at, head=True)

    def retry(self, rec: RequestRecord, now: float, error: str, backoff_s: float) -> list[Action]:
        """Re-queue after ``backoff_s`` (0: at once), or end ``failed`` once retries are spent."""
        rec.retries += 1
        rec.gpu_index = None
        if rec.retries > self.config.retry.max_retries:
            return [self.finish(rec, FAILED, now, error)]
        self.set_state(rec, Q)
        rec.error = error
        rid = rec.request.request_id
        if backoff_s > 0:
            rec.not_before = now + backoff_s
            self.held += 1
            heapq.heappush(self.backoff, (rec.not_before, next(self.seq), rid))
        else:
            self.requeue_at_head(rec)
        return []

    def retry_timed_out(self, rec: RequestRecord, now: float, timeout_s: float) -> list[Action]:
        """A request stopped because its timeout was up, retried as a failure is
        (``retry``: after the retry backoff, at the head of its priority, within
        ``retry.max_retries``) with a fresh timeout from the end of the backoff."""
        rec.timeout_retries += 1
        backoff_s = self.config.retry.backoff_s(rec.retries + 1)
        actions = self.retry(rec, now, "timeout", backoff_s)
        if rec.state is Q:
            rec.deadline = now + backoff_s + timeout_s
            self.push_deadline(rec.deadline, rec.request.request_id)
        return actions

    def end_backoffs(self, now: float) -> None:
        """Requests whose retry backoff ended by ``now`` go back to the head of the queue."""
        while self.backoff and self.backoff[0][0] <= now:
            _t, _s, rid = heapq.heappop(self.backoff)
            rec = self.records.get(rid)  # None: finished and forgotten
            if rec is not None and rec.state is Q and rec.not_before is not None:
                rec.not_before = None
                self.held -= 1
                self.requeue_at_head(rec)

    def due_deadlines(self, now: float) -> Iterator[RequestRecord]:
        """Pop the deadlines due by ``now``, yielding each live (unfinished) record in
        due order; lazily, so the caller ends one before the next is looked at."""
        while self.deadlines and self.deadlines[0][0] <= now:
            _t, _s, rid = heapq.heappop(self.deadlines)
            rec = self.records.get(rid)  # None: finished and forgotten
            if rec is not None and not rec.state.terminal:
                yield rec
