"""The reference worker's resident models: load on request, LRU by memory, report held.

CPU mode has no weights to copy, so a load is a calibrated delay (``load_s`` seconds;
the GenAI 2026 trace's median base-model load is 22.7 s, docs/simulator.md) and a
memory reservation counted against ``capacity_mb``. A job that names a model the worker
does not hold waits for its load first (a cancel ends the wait); models the router asks
to evict, then the least recently used, make room. Thread-safe: jobs run in a pool.
With real weights (PyTorch), ``torch_models.TorchModelHolder`` overrides the load and
unload steps (:meth:`ModelHolder._load`, :meth:`ModelHolder._unload`).
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

    def report(self) -> dict[str, Any]:
        """``{weights, capacity_mb, used_mb, loads, held}`` (``GET /models``)."""
        held = self.held()
        return {
            "weights": "delay",
            "capacity_mb": self.capacity_mb,
            "used_mb": sum(m["memory_mb"] for m in held),
            "loads": self.loads,
            "held": held,
        }

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
        with self._lock:  # the router's evictions first: room before the load
            for old in evict or ():
                if self._held.pop(old, None) is not None:
                    self._unload(old)
        loaded = self._load(model_id, memory_mb, cancel or threading.Event())
        if loaded is None:  # cancelled while loading: nothing is kept
            return 0.0
        held_mb, took_s = loaded
        with self._lock:
            self.loads += 1
            if held_mb <= self.capacity_mb:
                while self._held and sum(self._held.values()) + held_mb > self.capacity_mb:
                    self._unload(self._held.popitem(last=False)[0])
                self._held[model_id] = float(held_mb)
            else:  # loaded for this job only
                self._unload(model_id)
        return took_s

    def _load(
        self, model_id: str, memory_mb: float, cancel: threading.Event
    ) -> tuple[float, float] | None:
        """Load one model: ``(MB it holds, seconds taken)``, None when cancelled.
        CPU mode: wait ``load_s`` and reserve ``memory_mb``."""
        return None if cancel.wait(self.load_s) else (float(memory_mb), self.load_s)

    def _unload(self, model_id: str) -> None:
        """Free one model's memory (CPU mode: the reservation is all there is)."""
