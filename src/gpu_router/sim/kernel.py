"""Cheaper scheduling on SimPy's own event queue: callbacks without ``Timeout`` objects.

SimPy keeps one heap of ``(time, priority, eid, event)`` entries and processes them in
that order; ``eid`` comes from the environment's counter, so events of the same time
and priority run in the order they were scheduled. ``later(env, delay, value, fn)``
pushes exactly the entry ``env.timeout(delay, value).callbacks.append(fn)`` pushes
(time ``env._now + delay``, priority ``NORMAL``, the next eid), with a ``Call`` (a
triggered event holding one callback) in place of the ``Timeout``: the order of all
events, ours and SimPy's, is the same, and every seeded result with it.

``run(env, until)`` is ``env.run(until=until)`` (an ``URGENT`` stop entry at ``until``,
events before it processed in heap order, ``env.now`` left at ``until``) with the loop
of ``Environment.step`` inlined: one function for the whole run instead of a method
call per event. Any SimPy event in the queue (a ``Process``, an ``Event``) is handled
as ``step`` handles it.
"""

from __future__ import annotations

from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import simpy
from simpy.events import NORMAL, URGENT, EventPriority


class Call:
    """A triggered event that runs its callbacks (normally one) when its time comes."""

    __slots__ = ("_ok", "callbacks", "value")

    def __init__(self, fn: Callable[[Any], None], value: object) -> None:
        self.callbacks: list[Callable[[Any], None]] | None = [fn]
        self.value = value
        self._ok = True


def later(
    env: simpy.Environment,
    delay: float,
    value: object,
    fn: Callable[[Any], None],
    priority: EventPriority = NORMAL,
) -> None:
    """``fn(event)`` after ``delay`` simulated seconds, ``event.value`` = ``value``;
    the queue entry of ``env.timeout(delay, value)`` (or of ``env.schedule(event,
    priority, delay)`` for another priority)."""
    if delay < 0:
        raise ValueError(f"Negative delay {delay}")
    queue: list[Any] = env._queue
    heappush(queue, (env._now + delay, priority, next(env._eid), Call(fn, value)))


class _Stop:
    """The end-of-run marker (``Environment.run``'s ``until`` event)."""

    __slots__ = ()


def run(env: simpy.Environment, until: float) -> None:
    """Process every event before ``until`` in SimPy's order; ``env.now`` ends at ``until``."""
    at = float(until)
    if at <= env._now:
        raise ValueError(f"until ({at}) must be greater than the current simulation time")
    stop = _Stop()
    queue: list[Any] = env._queue
    heappush(queue, (at, URGENT, next(env._eid), stop))
    while queue:
        event: Any
        now, _prio, _eid, event = heappop(queue)
        env._now = now
        if event is stop:
            return
        if isinstance(event, Call):  # always triggered, never failed
            calls = event.callbacks
            event.callbacks = None
            if calls is not None:
                for fn in calls:
                    fn(event)
            continue
        callbacks = event.callbacks
        event.callbacks = None
        for callback in callbacks:
            callback(event)
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc
    raise RuntimeError(f'No scheduled events left but "until" event was not triggered: {at}')
