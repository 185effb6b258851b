"""Reconciling the router's view of a GPU's resident models with its worker's report.

The router keeps each GPU's models from its own placements (``residency``); a worker
says what it really holds (its ``/health`` or heartbeat ``models``, or the virtual
fleet's). They part when the worker loses its memory behind the router's back (a
restart, a crash between two samples), evicts on its own, or the router restarted and
knows nothing. :func:`reconcile` decides, from plain data, what the router must change:

- a model the router holds and the report lacks is **dropped**, unless its load is
  still in flight (the router started it and has not heard it end: ``pending``) or the
  report was taken before the load ended plus ``grace_s`` (a report that predates a
  load, or raced its end, must not erase it);
- a model the report names and the router does not hold is **adopted**, most recently
  used first, while it fits in the cache's free memory without evicting anything (a
  model the router evicted to make room for a load is still on the worker until that
  load ends: it does not fit, so it is not brought back); adopted models are the
  least recently used of the cache, in the worker's order, ready at the report's time.

Times in seconds on the router's clock; memory in MB.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class HeldModel:
    """A model the router holds on a GPU: ``ready_at`` when its load ended (or is
    expected to), ``pending`` its load is in flight (the router has not heard it end)."""

    model_id: str
    memory_mb: float
    ready_at: float
    pending: bool = False


@dataclass(frozen=True, slots=True)
class Reconciled:
    """What to change: ``dropped`` (held, gone from the worker), ``adopted`` (held by the
    worker, unknown to the router; least recently used first) and ``kept`` (missing from
    the report but in flight or within the grace window)."""

    dropped: tuple[str, ...] = ()
    adopted: tuple[str, ...] = ()
    kept: tuple[str, ...] = ()

    @property
    def changed(self) -> bool:
        return bool(self.dropped or self.adopted)


def reconcile(
    held: Sequence[HeldModel],
    capacity_mb: float,
    reported: Sequence[str],
    taken_at: float,
    grace_s: float,
    memory_mb: Callable[[str], float],
) -> Reconciled:
    """What the router must change so that its cache of one GPU (``held``, of
    ``capacity_mb``) agrees with a report (``reported``: ids, least recently used first)
    taken at ``taken_at``; ``memory_mb(id)``: the weights of a model to adopt."""
    names = set(reported)
    dropped, kept = [], []
    used = 0.0
    for h in held:
        if h.model_id in names:
            used += h.memory_mb
        elif h.pending or taken_at < h.ready_at + grace_s:
            kept.append(h.model_id)
            used += h.memory_mb
        else:
            dropped.append(h.model_id)
    have = {h.model_id for h in held}
    adopted: list[str] = []
    seen: set[str] = set()
    for mid in reversed(reported):  # most recently used first
        if mid in have or mid in seen:
            continue
        seen.add(mid)
        mb = memory_mb(mid)
        if used + mb <= capacity_mb:
            adopted.append(mid)
            used += mb
    adopted.reverse()
    return Reconciled(tuple(dropped), tuple(adopted), tuple(kept))
