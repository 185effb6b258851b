"""Binding requests to GPUs: which GPUs can take a request, and the binding loops.

Late binding keeps one central queue and binds a request only when a GPU can
start it; early binding binds at once to a GPU's own queue. Memory in MB.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .decisions import Action, Dispatch
from .fleet import FleetView
from .records import RequestRecord
from .router_state import P, Q, RouterState
from .strategies import DEFER, Choice, Strategy
from .types import Request

#: compatibility cache key: (min compute capability as major * 100 + minor, MB, type,
#: the model id when the Model Manager constrains its GPUs, else "", compute units)
_Key = tuple[int, float, str, str, int]
#: cached per key: (mask of GPUs that could ever serve it, whether any can, their indices)
_Compat = tuple[np.ndarray, bool, tuple[int, ...]]
#: a strategy's pure-Python choice: (fleet, feasible GPU indices ascending, duration_s)
Listed = Callable[[FleetView, list[int], float], int]

#: fleets up to this many GPUs find candidates with a pure-Python scan of the compatible
#: GPUs (numpy's per-call overhead dominates there); larger ones use the numpy masks
SMALL_FLEET = 64


class Binder:
    """Places requests on GPUs with a strategy, over the router's bookkeeping."""

    def __init__(self, state: RouterState, strategy: Strategy, rng: np.random.Generator):
        self.state = state
        self.strategy = strategy
        self.rng = rng
        # the state's containers, never rebound: bound here for the hot loops
        self.fleet = state.fleet
        self.queue = state.queue
        self.records = state.records
        self.gpu_queues = state.gpu_queues
        self.pending = state.pending
        self.on_gpu = state.on_gpu
        self.counts = state.counts
        self.early = state.early
        self.scan_limit = state.config.dispatch_scan_limit
        self._compat: dict[_Key, _Compat] = {}
        self._last: tuple[Request, float, _Compat] | None = None  # compat_entry's last answer
        #: models whose GPU types or compute capability the Model Manager constrains
        registry = state.model_registry
        self._constrained = frozenset(registry.constrained()) if state.residency else frozenset()
        self.residency = state.residency
        #: requests a strategy deferred: request id -> when its delay bound ends (s)
        self.holds: dict[str, float] = {}
        self._max_delay_s = float(getattr(strategy, "max_delay_s", 0.0))
        #: with at least this many queued requests per slot in service, a dispatch pass
        #: that deferred every candidate places its first deferred request anyway
        #: (work-conserving under a backlog); None: never
        self._backlog: float | None = getattr(strategy, "backlog_per_slot", None)
        self._deferred = False  # the last ``choose`` returned because of a DEFER
        # strategies that offer a pure-Python ``choose_listed`` use it on small fleets
        listed = getattr(strategy, "choose_listed", None)
        self._listed: Listed | None = listed if self.fleet.size <= SMALL_FLEET else None

    # -- compatibility ------------------------------------------------------------

    def compatible(self, request: Request, memory: float) -> np.ndarray:
        """Mask of the GPUs that could ever serve it (a shared array: do not modify)."""
        return self.compat_entry(request, memory)[0]

    def compatible_any(self, request: Request, memory: float) -> bool:
        return self.compat_entry(request, memory)[1]

    def _model_mask(self, model_id: str) -> np.ndarray:
        """GPUs the Model Manager allows ``model_id`` on: GPU type and compute capability."""
        f, registry = self.fleet, self.state.model_registry
        info = registry.info(model_id)
        names = np.array([registry.runs_on(model_id, g.name) for g in f.states], dtype=bool)
        cc = info.min_compute_capability
        if cc is None:
            return names
        mask: np.ndarray = names & (f.compute_capability >= cc[0] * 100 + cc[1])
        return mask

    def forget_compatibility(self) -> None:
        """What a GPU could ever serve changed (a new sample): recompute on demand."""
        self._compat.clear()
        self._last = None

    def compat_entry(self, request: Request, memory: float) -> _Compat:
        """(mask of GPUs that could ever serve it, whether any can, their indices),
        cached per class; the last request's entry is kept (admission, then placement,
        ask twice)."""
        last = self._last
        if last is not None and last[0] is request and last[1] == memory:
            return last[2]
        entry = self._lookup(request, memory)
        self._last = (request, memory, entry)
        return entry

    def _lookup(self, request: Request, memory: float) -> _Compat:
        res = request.resources
        cc = res.min_compute_capability
        model = request.model_id if request.model_id in self._constrained else ""
        units = res.compute_units
        key = (0 if cc is None else cc[0] * 100 + cc[1], memory, request.type, model, units)
        entry = self._compat.get(key)
        if entry is None:
            mask = self.fleet.compatible(key[0], memory, request.type, units)
            if model:
                mask = mask & self._model_mask(model)
            if len(self._compat) > 4096:
                self._compat.clear()
            indices = tuple(mask.nonzero()[0].tolist()) if self._listed is not None else ()
            entry = self._compat[key] = (mask, bool(mask.any()), indices)
        return entry

    # -- binding ------------------------------------------------------------------

    def startable(self, request: Request, memory: float) -> np.ndarray:
        """GPUs that can start ``request`` now: compatible, open (up, a free slot), the
        memory free and, for ``compute_units`` > 1, that many slots free."""
        f = self.fleet
        mask = self.compatible(request, memory) & f.open & (f.free_mb >= memory)
        units = request.resources.compute_units
        return mask if units == 1 else mask & f.has_units(units)

    def feasible(self, rec: RequestRecord) -> np.ndarray:
        """GPUs the request can start on now (``startable``)."""
        return self.startable(rec.request, rec.memory_mb)

    def choose(self, rec: RequestRecord, now: float, *, may_defer: bool = True) -> int | None:
        """The GPU the strategy picks among those ``rec`` can start on now; None: none.
        Small fleets with a listed strategy scan in pure Python (the same choice)."""
        f = self.fleet
        listed = self._listed
        if listed is not None:
            memory, units = rec.memory_mb, rec.units
            is_open, free = f.open_list, f.free_list
            found = [
                i
                for i in self.compat_entry(rec.request, memory)[2]
                if is_open[i] and free[i] >= memory
            ]
            if units > 1:
                slots, running = f.slots_list, f.running_list
                found = [i for i in found if slots[i] - running[i] >= units]
            return listed(f, found, rec.duration_s) if found else None
        cands = self.feasible(rec).nonzero()[0]
        if not len(cands):
            return None
        choice = Choice(
            rec.request, rec.duration_s, f, cands, self.rng, now, self.residency, may_defer
        )
        i = self.strategy.choose(choice)
        if i == DEFER:
            # the bound runs from the first deferral (strategies keep the same rule)
            self.holds.setdefault(rec.request.request_id, now + self._max_delay_s)
            self._deferred = True
            return None
        return i

    def next_hold_end(self, after: float) -> float | None:
        """The earliest delay bound of a deferred request still queued, later than
        ``after`` (bounds reached by then were already acted on); drops the rest."""
        holds, records = self.holds, self.records
        best: float | None = None
        for rid, until in list(holds.items()):
            rec = records.get(rid)
            if until <= after or rec is None or rec.state is not Q:
                del holds[rid]
            elif best is None or until < best:
                best = until
        return best

    def start_now(self, rec: RequestRecord, now: float) -> Dispatch | None:
        """Late binding with nothing waiting: start ``rec`` at once if a GPU can take it."""
        i = self.choose(rec, now) if self.fleet.open_count else None
        if i is None:
            return None
        self.place(rec, i, now)
        return self.start_on(rec, i, now)

    def dispatch(self, now: float) -> list[Action]:
        """Start (and, early, bind) whatever can go now; the ``Dispatch`` actions."""
        return self._dispatch_early(now) if self.early else self._dispatch_late(now)

    def _dispatch_late(self, now: float) -> list[Action]:
        """Place the first request in queue order that fits, and again while GPUs are
        open. Each pass restarts at the head (requests skipped before still do not fit:
        capacity only shrank), so no pass materialises the queue."""
        f, queue, records = self.fleet, self.queue, self.records
        actions: list[Action] = []
        while f.open_count and len(queue):
            placed = None
            first_deferred: RequestRecord | None = None
            for rid in queue.ordered(now, self.scan_limit):
                rec = records[rid]
                self._deferred = False
                choice = self.choose(rec, now)
                if choice is None:
                    if self._deferred and first_deferred is None:
                        first_deferred = rec
                    if not self._deferred and queue.is_overdue(rid, now):
                        return actions  # hold the capacity for the aged request
                    continue  # a deferral (bounded by the strategy) holds nothing
                placed = (rec, choice)
                break  # the queue changes below: leave its iterator first
            if placed is None and first_deferred is not None and self._backlogged():
                forced = self.choose(first_deferred, now, may_defer=False)
                placed = None if forced is None else (first_deferred, forced)
            if placed is None:
                break
            rec, i = placed
            queue.remove(rec.request.request_id, dispatched=True)
            self.place(rec, i, now)
            actions.append(self.start_on(rec, i, now))
        return actions

    def _backlogged(self) -> bool:
        limit = self._backlog
        return limit is not None and len(self.queue) >= limit * self.fleet.slots_available

    def _dispatch_early(self, now: float) -> list[Action]:
        f = self.fleet
        actions: list[Action] = []
        avail = f.available()
        for rid in list(self.queue.ordered(now)):
            rec = self.records[rid]
            cands = (self.compatible(rec.request, rec.memory_mb) & avail).nonzero()[0]
            if len(cands) == 0:
                continue
            choice = Choice(rec.request, rec.duration_s, f, cands, self.rng, now, self.residency)
            i = self.strategy.choose(choice)
            if i == DEFER:
                continue
            self.queue.remove(rid, dispatched=True)
            self.place(rec, i, now)
            f.queued[i] += 1
            self.gpu_queues[i].push(rid, rec.request.user_id, rec.request.priority, now)
        for gpu in (f.open & (f.queued > 0)).nonzero()[0]:
            i = int(gpu)
            gq = self.gpu_queues[i]
            for rid in list(gq.ordered(now, self.scan_limit)):
                if f.running[i] >= f.slots[i]:
                    break
                rec = self.records[rid]
                if f.free_mb[i] < rec.memory_mb or f.running[i] + rec.units > f.slots[i]:
                    if gq.is_overdue(rid, now):
                        break
                    continue
                gq.remove(rid, dispatched=True)
                f.queued[i] -= 1
                actions.append(self.start_on(rec, i, now))
        return actions

    def place(self, rec: RequestRecord, i: int, now: float) -> None:
        """Charge a request's expected work to GPU ``i`` (queued or running there)."""
        rec.gpu_index = i
        rec.placed_s = rec.duration_s * rec.units / self.fleet.speed_list[i]
        if self.residency is not None:
            rec.placed_s += self.residency.expected_load_s(i, rec.request.model_id, now)
        self.fleet.add_work(i, rec.placed_s)

    def start_on(self, rec: RequestRecord, i: int, now: float) -> Dispatch:
        """Start ``rec`` on GPU ``i``: its slot, memory and the ``Dispatch`` to apply."""
        memory = rec.memory_mb
        self.fleet.occupy(i, memory, rec.units)
        self.pending[i].append((now, memory))
        rid = rec.request.request_id
        self.on_gpu[i].add(rid)
        counts = self.counts  # RouterState.set_state(rec, P), inline
        counts[rec.state] -= 1
        counts[P] += 1
        rec.state = P
        rec.dispatched_at = now
        rec.dispatch_count += 1
        res = self.residency
        if res is None:
            return Dispatch(rid, self.fleet.gpu_ids[i])
        model = rec.request.model_id
        cold = not res.holds(i, model)
        run_s = rec.duration_s / self.fleet.speed_list[i]
        wait_s, evicted = res.start(i, model, now, run_s)
        return Dispatch(rid, self.fleet.gpu_ids[i], model, wait_s, cold, tuple(evicted))
