"""The Router's bookkeeping: fleet, queues, request records, timers and counts.

``RouterState`` builds what the router tracks and holds the primitives that keep
its accounting exact (state counts, a GPU's memory and work in seconds, quota
slots); ``Dispatcher``, ``GpuAdmin`` and ``Router`` build on it.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable
from itertools import count
from typing import TYPE_CHECKING

import numpy as np

from .config import RouterConfig
from .decisions import Action, Finished
from .errors import InvalidValue
from .estimator import ResourceEstimator
from .fleet import FleetView
from .outlier import OutlierDetector
from .queue import CentralQueue
from .quota import QuotaManager
from .records import RequestRecord, RequestSnapshot
from .strategies import make_strategy
from .types import GpuState, RequestState

Q, P = RequestState.QUEUED, RequestState.PROCESSING


class RouterState:
    """What the router tracks, and the accounting every transition goes through."""

    def __init__(
        self,
        gpus: Iterable[GpuState],
        config: RouterConfig | None = None,
        rng: np.random.Generator | None = None,
    ) -> None:
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

    if TYPE_CHECKING:  # provided by ``dispatch.Dispatcher``, which the Router also is

        def _dispatch(self, now: float) -> list[Action]: ...

    # -- queries ------------------------------------------------------------------

    def record(self, request_id: str) -> RequestSnapshot:
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

    @property
    def queue_length(self) -> int:
        """Requests admitted and not yet dispatched (backoffs and GPU queues included)."""
        return len(self.queue) + self._waiting_elsewhere()

    def _waiting_elsewhere(self) -> int:
        """Admitted requests outside the central queue: backoffs and GPU queues."""
        return self._held + (int(self.fleet.queued.sum()) if self.early else 0)

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

    # -- accounting ---------------------------------------------------------------

    def _index(self, gpu_id: str) -> int:
        try:
            return self.fleet.index[gpu_id]
        except KeyError:
            raise InvalidValue("gpu_id", gpu_id, "no such GPU") from None

    def _set_state(self, rec: RequestRecord, state: RequestState) -> None:
        self.counts[rec.state] -= 1
        self.counts[state] += 1
        rec.state = state

    def _finish(
        self, rec: RequestRecord, state: RequestState, now: float, error: str | None = None
    ) -> Finished:
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

    def _requeue_at_head(self, rec: RequestRecord) -> None:
        """Back into the central queue at the head of its priority (retries, GPUs lost)."""
        req = rec.request
        self.queue.push(req.request_id, req.user_id, req.priority, req.submitted_at, head=True)

    def _retry(self, rec: RequestRecord, now: float, error: str, backoff_s: float) -> list[Action]:
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
            self._requeue_at_head(rec)
        return []
