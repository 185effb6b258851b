"""The reference worker's resident models: load on request, LRU by memory, report held.

CPU mode has no weights to copy, so a load is a calibrated delay (``load_s`` seconds;
the GenAI 2026 trace's median base-model load is 22.7 s, docs/simulator.md) and a
memory reservation counted against ``capacity_mb``. A job that names a model the worker
does not hold waits for its load first (a cancel ends the wait); models the router asks
to evict, then the least recently used, make room. Thread-safe: jobs run in a pool.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any


class ModelHolder:
    """Models held by one worker, least recently used first."""

    def __init__(self, capacity_mb: float, load_s: float) -> None:
        if not capacity_mb > 0 or not load_s >= 0:
            raise ValueError(f"capacity_mb={capacity_mb!r} must be > 0, load_s={load_s!r} >= 0")
        self.capacity_mb = float(capacity_mb)
        self.load_s = float(load_s)
        self._held: OrderedDict[str, float] = OrderedDict()
        self._lock = threading.Lock()
        self.loads = 0

    def held(self) -> list[dict[str, Any]]:
        """``[{id, memory_mb}]``, least recently used first."""
        with self._lock:
            return [{"id": m, "memory_mb": mb} for m, mb in self._held.items()]

    def used_mb(self) -> float:
        with self._lock:
            return sum(self._held.values())

    def ensure(
        self,
        model_id: str,
        memory_mb: float,
        evict: list[str] | None = None,
        cancel: threading.Event | None = None,
    ) -> float:
        """Make ``model_id`` resident; the seconds spent loading it (0: it was held).
        A model larger than the capacity is loaded for the job and not kept."""
        with self._lock:
            if model_id in self._held:
                self._held.move_to_end(model_id)
                return 0.0
        waited = (cancel or threading.Event()).wait(self.load_s)
        if waited:  # cancelled while loading: nothing is kept
            return 0.0
        with self._lock:
            self.loads += 1
            for old in evict or ():
                self._held.pop(old, None)
            if memory_mb <= self.capacity_mb:
                while self._held and sum(self._held.values()) + memory_mb > self.capacity_mb:
                    self._held.popitem(last=False)
                self._held[model_id] = float(memory_mb)
        return self.load_s
