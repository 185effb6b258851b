"""Locality-aware strategies: place where the request's model is already resident.

Every strategy here scores a candidate GPU i by its expected finish, in seconds from now:

    cost_i = work_left_i / slots_i + weights_wait_i + duration / speed_i

where ``weights_wait_i`` is 0 when the model is resident and ready on i, the rest of
the load when the router already started loading it there (in-flight loads count),
and the Model Manager's load-time estimate when i must load it (cold). With locality
off (``choice.models`` None) the wait is 0 and none of them defers.

- ``warm-first``: the cheapest GPU holding the model (ready or loading); a cold one
  (the cheapest) only when no candidate holds it.
- ``locality-cost``: delay scheduling with a bound. When the cheapest candidate is
  cold, compare it with waiting for a GPU that holds the model: its expected free
  time (the router's own placements) plus the weights' wait plus the run, plus the
  run of every request of that model already deferred at this instant, shared over
  its replicas. Waiting is cheaper: ``DEFER``; never more than ``max_delay_s`` after
  it first deferred the request (delay scheduling bounds the skips, not the queueing).
- ``locality-replicate``: replication of hot models under load. A model with no
  replica loads at once; one with replicas waits for them (``DEFER``) until more than
  ``per_replica`` requests of it are deferred per replica, then it gains a replica
  (a load on the cheapest candidate); the same ``max_delay_s`` bound.

Work conservation: with ``backlog_per_slot`` (default 1) or more queued requests per
slot in service, a dispatch pass in which the strategy deferred every request it was
asked about places the first of them anyway (``Choice.may_defer`` False): under a
backlog an idle GPU costs more than a load. None turns this off.

Deferral counts are per instant (``choice.now``): each dispatch pass at a new time
starts them afresh, so a burst for one cold model starts one load per
``per_replica + 1`` requests, not one per request.
"""

from __future__ import annotations

from ..errors import InvalidValue
from ..residency import Residency
from .base import DEFER, Choice


def _check(name: str, value: float, minimum: float = 0.0) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not value >= minimum:
        raise InvalidValue(name, value, f"must be a number >= {minimum}")
    return float(value)


def costs(choice: Choice) -> list[tuple[float, int, bool]]:
    """(expected finish s, GPU index, holds the model) of every candidate, fleet order."""
    f, res, now = choice.fleet, choice.models, choice.now
    model, d = choice.request.model_id, choice.duration_s
    work, slots, speed = f.work_list, f.slots_list, f.speed_list
    out = []
    for gpu in choice.candidates.tolist():
        base = work[gpu] / slots[gpu] + d / speed[gpu]
        if res is None:
            out.append((base, gpu, True))
            continue
        ready = res.ready_in(gpu, model, now)
        if ready is None:
            out.append((base + res.models.load_s(model), gpu, False))
        else:
            out.append((base + ready, gpu, True))
    return out


def cheapest(scored: list[tuple[float, int, bool]]) -> tuple[float, int, bool]:
    """The lowest cost; ties to the first GPU in fleet order."""
    best = scored[0]
    for item in scored[1:]:
        if item[0] < best[0]:
            best = item
    return best


class WarmFirst:
    """The cheapest GPU that holds the model; the cheapest cold one otherwise."""

    name = "warm-first"

    def choose(self, choice: Choice) -> int:
        scored = costs(choice)
        warm = [s for s in scored if s[2]]
        return cheapest(warm or scored)[1]


class _Deferring:
    """Deferral bookkeeping shared by the delaying strategies (per instant, per model)."""

    def __init__(self, max_delay_s: float, backlog_per_slot: float | None) -> None:
        self.max_delay_s = _check("max_delay_s", max_delay_s)
        self.backlog_per_slot = (
            None if backlog_per_slot is None else _check("backlog_per_slot", backlog_per_slot)
        )
        self._at = float("nan")
        self._deferred: dict[str, set[str]] = {}
        #: request id -> when this strategy first deferred it (s)
        self.first_deferred: dict[str, float] = {}

    def deferred(self, choice: Choice) -> int:
        """Other requests of this model deferred at ``choice.now`` so far."""
        if choice.now != self._at:
            self._at = choice.now
            self._deferred = {}
        held = self._deferred.get(choice.request.model_id, ())
        return len(held) - (choice.request.request_id in held)

    def defer(self, choice: Choice) -> int:
        rid = choice.request.request_id
        self._deferred.setdefault(choice.request.model_id, set()).add(rid)
        if len(self.first_deferred) > 100_000:  # requests cancelled while deferred
            self.first_deferred.clear()
        self.first_deferred.setdefault(rid, choice.now)
        return DEFER

    def may_wait(self, choice: Choice) -> bool:
        """Whether the request may still be held: less than ``max_delay_s`` since it
        was first deferred (delay scheduling bounds the skips, not the queueing)."""
        if not choice.may_defer:
            return False
        first = self.first_deferred.get(choice.request.request_id, choice.now)
        return choice.now - first < self.max_delay_s

    def placed(self, choice: Choice, gpu: int) -> int:
        self.first_deferred.pop(choice.request.request_id, None)
        return gpu


def warm_wait_s(choice: Choice, res: Residency, ahead: int) -> float | None:
    """Expected finish (s from now) on the best GPU holding the model that is up, with
    ``ahead`` requests of the model already waiting for its replicas; None: none."""
    f, model, now, d = choice.fleet, choice.request.model_id, choice.now, choice.duration_s
    holders = [j for j in res.holding(model) if f.up_list[j]]
    if not holders:
        return None
    best = min(
        res.free_in(j, now) + (res.ready_in(j, model, now) or 0.0) + d / f.speed_list[j]
        for j in holders
    )
    return best + ahead * d / len(holders)


class LocalityCost(_Deferring):
    """Wait for a warm GPU when that is expected to finish sooner than a cold load."""

    name = "locality-cost"

    def __init__(self, max_delay_s: float = 60.0, backlog_per_slot: float | None = 1.0) -> None:
        super().__init__(max_delay_s, backlog_per_slot)

    def choose(self, choice: Choice) -> int:
        res = choice.models
        best = cheapest(costs(choice))
        if res is None or best[2] or not self.may_wait(choice):
            return self.placed(choice, best[1])
        wait = warm_wait_s(choice, res, self.deferred(choice))
        if wait is not None and wait < best[0]:
            return self.defer(choice)
        return self.placed(choice, best[1])


class LocalityReplicate(_Deferring):
    """Wait for the model's replicas; add one when its backlog per replica is high."""

    name = "locality-replicate"

    def __init__(
        self, per_replica: int = 2, max_delay_s: float = 60.0, backlog_per_slot: float | None = 1.0
    ) -> None:
        super().__init__(max_delay_s, backlog_per_slot)
        if isinstance(per_replica, bool) or not isinstance(per_replica, int) or per_replica < 0:
            raise InvalidValue("per_replica", per_replica, "must be an integer >= 0")
        self.per_replica = per_replica

    def choose(self, choice: Choice) -> int:
        res = choice.models
        scored = costs(choice)
        warm = [s for s in scored if s[2]]
        if warm or res is None:
            return self.placed(choice, cheapest(warm or scored)[1])
        f = choice.fleet
        replicas = sum(1 for j in res.holding(choice.request.model_id) if f.up_list[j])
        waiting = self.deferred(choice)
        if replicas and waiting < self.per_replica * replicas and self.may_wait(choice):
            return self.defer(choice)
        return self.placed(choice, cheapest(scored)[1])
