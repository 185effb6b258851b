"""GPU model residency: which models each GPU holds, as a memory-bounded LRU cache.

Each GPU's model cache holds model weights up to ``capacity_mb`` (its total memory
times ``ModelsConfig.cache_share``; requests' own memory is reserved apart). The
router updates it as it places: a placement of a model the GPU does not hold starts
a load (ready ``load_s`` later, evicting least recently used models until the new
one fits), a placement of a held model touches it. A model larger than the whole
cache is loaded for the run and not kept. Times in seconds on the caller's clock.

The router's own placements and in-flight loads are counted: a model loading on a
GPU is held there from the moment the load starts (``ready_in`` says how long it
still takes), so a burst for one model sees the load already going; it counts as in
flight (``pending``) until its end is heard (``loaded``) or the request that waited for
it leaves (``settle``). ``Residency.reconcile`` makes a GPU's cache follow its worker's
report of what it holds (``model_reports``).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .model_reports import HeldModel, reconcile
from .models import ModelRegistry


@dataclass(frozen=True, slots=True)
class LocalityStats:
    """Placements so far that had to load their model (``cold_starts``) or found it
    held (``warm_starts``), and model weights resident now over the fleet (MB)."""

    cold_starts: int
    warm_starts: int
    memory_used_mb: float


class ModelCache:
    """One GPU's resident models, least recently used first."""

    __slots__ = ("_lru", "_pending", "_ready_at", "capacity_mb", "used_mb")

    def __init__(self, capacity_mb: float) -> None:
        self.capacity_mb = float(capacity_mb)
        self.used_mb = 0.0
        self._lru: OrderedDict[str, float] = OrderedDict()
        self._ready_at: dict[str, float] = {}
        self._pending: set[str] = set()  # loads started here, their end not heard yet

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._lru

    def models(self) -> tuple[str, ...]:
        """Held model ids, least recently used first."""
        return tuple(self._lru)

    def ready_at(self, model_id: str) -> float | None:
        """When the model's weights are (or were) ready; None when not held."""
        return self._ready_at.get(model_id) if model_id in self._lru else None

    def touch(self, model_id: str) -> None:
        self._lru.move_to_end(model_id)

    def load(self, model_id: str, memory_mb: float, now: float, load_s: float) -> list[str]:
        """Start loading ``model_id`` (not held); returns the evicted ids, oldest first."""
        evicted: list[str] = []
        if memory_mb > self.capacity_mb:
            return evicted  # loaded for the run only: it cannot stay
        while self._lru and self.used_mb + memory_mb > self.capacity_mb:
            old = next(iter(self._lru))
            self.remove(old)
            evicted.append(old)
        self._lru[model_id] = float(memory_mb)
        self._ready_at[model_id] = now + load_s
        self._pending.add(model_id)
        self.used_mb += memory_mb
        return evicted

    def loaded(self, model_id: str, now: float) -> None:
        """The load of a held model finished at ``now``."""
        if model_id in self._lru:
            self._ready_at[model_id] = now
        self._pending.discard(model_id)

    def settle(self, model_id: str) -> None:
        """No job waits for the model's load any more (its end may not have been heard:
        a cancel during the load); it is no longer counted in flight."""
        self._pending.discard(model_id)

    def remove(self, model_id: str) -> None:
        """Forget one held model."""
        self.used_mb -= self._lru.pop(model_id)
        self._ready_at.pop(model_id, None)
        self._pending.discard(model_id)
        if not self._lru:
            self.used_mb = 0.0  # no float drift once empty

    def adopt(self, memory_mb: dict[str, float], now: float) -> None:
        """Hold models a worker reported (id -> MB, ready at ``now``) as the least
        recently used, in the order given."""
        for mid in reversed(list(memory_mb)):
            mb = memory_mb[mid]
            self._lru[mid] = float(mb)
            self._lru.move_to_end(mid, last=False)
            self._ready_at[mid] = now
            self.used_mb += mb

    def held(self) -> list[HeldModel]:
        """The held models with their ready time and whether their load is in flight."""
        return [
            HeldModel(m, mb, self._ready_at[m], m in self._pending) for m, mb in self._lru.items()
        ]

    def drop(self) -> list[str]:
        """Forget everything (the GPU restarted or went down); the ids dropped."""
        gone = list(self._lru)
        self._lru.clear()
        self._ready_at.clear()
        self._pending.clear()
        self.used_mb = 0.0
        return gone


class Residency:
    """Every GPU's model cache, the count of GPUs holding each model, and each GPU's
    expected busy-until time (from the router's placements)."""

    def __init__(self, memory_total_mb: Iterable[float], share: float, models: ModelRegistry):
        self.models = models
        self.caches = [ModelCache(mb * share) for mb in memory_total_mb]
        self.holders: dict[str, set[int]] = {}
        #: per GPU, when the work the router started there is expected to end (s)
        self.busy_until = [0.0] * len(self.caches)
        #: per model, requests of it running now
        self.running: dict[str, int] = {}
        self.cold_starts = 0
        self.warm_starts = 0

    def holds(self, i: int, model_id: str) -> bool:
        return model_id in self.caches[i]

    def ready_in(self, i: int, model_id: str, now: float) -> float | None:
        """Seconds until ``model_id`` is ready on GPU ``i`` (0: ready); None: not held."""
        at = self.caches[i].ready_at(model_id)
        return None if at is None else max(0.0, at - now)

    def replicas(self, model_id: str) -> int:
        """GPUs holding ``model_id`` (loaded or loading)."""
        return len(self.holders.get(model_id, ()))

    def holding(self, model_id: str) -> tuple[int, ...]:
        """Indices of the GPUs holding ``model_id``, ascending."""
        return tuple(sorted(self.holders.get(model_id, ())))

    def expected_load_s(self, i: int, model_id: str, now: float) -> float:
        """Seconds a placement of ``model_id`` on GPU ``i`` now waits for its weights."""
        ready = self.ready_in(i, model_id, now)
        return self.models.load_s(model_id) if ready is None else ready

    def free_in(self, i: int, now: float) -> float:
        """Expected seconds until the work the router started on GPU ``i`` ends."""
        return max(0.0, self.busy_until[i] - now)

    def start(self, i: int, model_id: str, now: float, run_s: float) -> tuple[float, list[str]]:
        """A request of ``model_id`` starts on GPU ``i``: (seconds it waits for the
        weights, models evicted). ``run_s`` is its expected run time there."""
        cache = self.caches[i]
        self.running[model_id] = self.running.get(model_id, 0) + 1
        ready = self.ready_in(i, model_id, now)
        if ready is not None:
            cache.touch(model_id)
            self.warm_starts += 1
            wait, evicted = ready, []
        else:
            wait = self.models.load_s(model_id)
            evicted = cache.load(model_id, self.models.memory_mb(model_id), now, wait)
            for old in evicted:
                self._unhold(i, old)
            if model_id in cache:
                self.holders.setdefault(model_id, set()).add(i)
            self.cold_starts += 1
        self.busy_until[i] = max(self.busy_until[i], now + wait + run_s)
        return wait, evicted

    def finish(self, i: int, model_id: str, now: float, *, idle: bool) -> None:
        """A request of ``model_id`` left GPU ``i`` (finished, failed, aborted); ``idle``:
        nothing the router placed runs there any more."""
        left = self.running.get(model_id, 0) - 1
        if left > 0:
            self.running[model_id] = left
        else:
            self.running.pop(model_id, None)
        if idle:
            self.busy_until[i] = now
        self.caches[i].settle(model_id)  # a load it waited for is over, heard or not

    def loaded(self, i: int, model_id: str, now: float) -> None:
        """The worker reported the load done (its measured time goes to the registry)."""
        self.caches[i].loaded(model_id, now)

    def reconcile(self, i: int, reported: Sequence[str], taken_at: float, grace_s: float) -> bool:
        """Make GPU ``i``'s cache agree with its worker's report (``model_reports``);
        whether anything changed."""
        cache, registry = self.caches[i], self.models
        plan = reconcile(
            cache.held(), cache.capacity_mb, reported, taken_at, grace_s, registry.memory_mb
        )
        for mid in plan.dropped:
            cache.remove(mid)
            self._unhold(i, mid)
        cache.adopt({m: registry.memory_mb(m) for m in plan.adopted}, taken_at)
        for mid in plan.adopted:
            self.holders.setdefault(mid, set()).add(i)
        return plan.changed

    def drop(self, i: int) -> None:
        """GPU ``i`` lost its memory (crash, restart): nothing is resident any more."""
        for old in self.caches[i].drop():
            self._unhold(i, old)

    def _unhold(self, i: int, model_id: str) -> None:
        held = self.holders.get(model_id)
        if held is not None:
            held.discard(i)
            if not held:
                del self.holders[model_id]

    def stats(self) -> LocalityStats:
        return LocalityStats(self.cold_starts, self.warm_starts, self.memory_used_mb())

    def memory_used_mb(self) -> float:
        """Model weights resident over the fleet, MB."""
        return sum(c.used_mb for c in self.caches)
