"""The resident models of one virtual GPU: loads charged, LRU by memory, reported.

A job that names a model (``{id, memory_mb, evict}``, as the router sends it to the
reference worker) and finds it neither held nor loading loads it first: the models
the router asks to evict go, then the least recently used until the new weights fit
in ``capacity_mb``, and the load takes a time drawn from ``load_times`` (an object
with ``sample(rng)``: ``sim.model_loads.LoadTimes`` over the measured latencies) with
the fleet's seeded ``rng``, or ``load_s`` when there are none. A job whose model is
still loading waits for the rest of that load (it loads nothing itself). A model
larger than the cache is loaded for the job and not kept. ``held()`` reports what is
resident in the reference worker's shape (``[{id, memory_mb}]``, least recently used
first; a model counts once its load has ended). Load times are modelled seconds (the
jobs' unit); ``now`` is the event loop's clock, real seconds, ``time_scale`` real
seconds per modelled second.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any, Protocol

import numpy as np


class LoadSampler(Protocol):
    def sample(self, rng: np.random.Generator) -> float: ...


class VirtualModels:
    """Models held by one virtual GPU, least recently used first."""

    def __init__(
        self,
        capacity_mb: float,
        load_times: LoadSampler | None,
        rng: np.random.Generator,
        load_s: float = 0.0,
    ) -> None:
        self.capacity_mb = float(capacity_mb)
        self.load_times = load_times
        self.rng = rng
        self.load_s = float(load_s)
        self._held: OrderedDict[str, float] = OrderedDict()  # id -> MB
        self._ready_at: dict[str, float] = {}  # id -> loop time its load ends
        self.loads = 0
        self.load_s_total = 0.0

    def ensure(self, model: dict[str, Any], now: float, time_scale: float) -> tuple[float, float]:
        """Make the job's model resident: (modelled seconds the job waits for it, seconds
        it spent loading it: 0 when the model was held or already loading)."""
        mid = str(model["id"])
        if mid in self._held:
            self._held.move_to_end(mid)
            return max(0.0, self._ready_at[mid] - now) / time_scale, 0.0
        load = self.load_times.sample(self.rng) if self.load_times is not None else self.load_s
        self.loads += 1
        self.load_s_total += load
        mb = float(model.get("memory_mb", 0.0))
        for old in model.get("evict", ()) or ():
            self._forget(str(old))
        if mb <= self.capacity_mb:
            while self._held and self.used_mb() + mb > self.capacity_mb:
                self._forget(next(iter(self._held)))
            self._held[mid] = mb
            self._ready_at[mid] = now + load * time_scale
        return load, load

    def _forget(self, mid: str) -> None:
        self._held.pop(mid, None)
        self._ready_at.pop(mid, None)

    def used_mb(self) -> float:
        """Weights resident or loading, MB."""
        return sum(self._held.values())

    def held(self, now: float) -> list[dict[str, Any]]:
        """``[{id, memory_mb}]`` of the models whose load has ended, least recently used
        first."""
        return [
            {"id": m, "memory_mb": mb} for m, mb in self._held.items() if self._ready_at[m] <= now
        ]

    def clear(self) -> None:
        """The GPU lost its memory (a restart, a crash)."""
        self._held.clear()
        self._ready_at.clear()
