"""Dispatch: which GPUs can take a request, and the late and early binding loops.

Late binding keeps one central queue and places a request only when a GPU can
start it; early binding places at once on a GPU's own queue. Memory in MB.
"""

from __future__ import annotations

import numpy as np

from .decisions import Action, Dispatch
from .records import RequestRecord
from .router_state import P, RouterState
from .strategies import Choice
from .types import Request


class Dispatcher(RouterState):
    """Placement and dispatch on top of the router's bookkeeping."""

    # -- compatibility ------------------------------------------------------------

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

    def _admits(self, request: Request, memory: float) -> bool:
        """Room to admit: below the queue bound, or in a loss system (``queue.max_size``
        0) only when it can start at once: nothing waits and a compatible GPU is open
        with the memory free."""
        if self.config.queue.loss:
            if self.queue_length:
                return False
            f = self.fleet
            return bool((self._compatible(request, memory) & f.open & (f.free_mb >= memory)).any())
        return self.queue.admits(request.priority, self._waiting_elsewhere())

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
                cands = self._feasible(rec).nonzero()[0]
                if len(cands) == 0:
                    if self.queue.is_overdue(rid, now):
                        return actions  # hold the capacity for the aged request
                    continue
                placed = (
                    rec,
                    self.strategy.choose(
                        Choice(rec.request, rec.duration_s, f, cands, self.rng, now)
                    ),
                )
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
            cands = (self._compatible(rec.request, rec.memory_mb) & avail).nonzero()[0]
            if len(cands) == 0:
                continue
            i = self.strategy.choose(Choice(rec.request, rec.duration_s, f, cands, self.rng, now))
            self.queue.remove(rid, dispatched=True)
            self._place(rec, i, now)
            f.queued[i] += 1
            self.gpu_queues[i].push(rid, rec.request.user_id, rec.request.priority, now)
        for gpu in (f.open & (f.queued > 0)).nonzero()[0]:
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
