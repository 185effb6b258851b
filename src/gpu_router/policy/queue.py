"""The central priority queue (DESIGN 3.3).

Dispatch order, documented and tested:

1. **Aged** requests first: a request that has waited ``max_wait_s[priority]`` or
   longer is overdue; overdue requests go in order of their deadline
   (``enqueued_at + max_wait_s[priority]``), so none waits much past its maximum.
2. Then by **priority**, 5 before 1.
3. Inside a priority, **fair share** between users: start-time fair queueing with
   unit cost. The n-th waiting request of a user gets the tag
   ``max(band virtual time, user's previous tag) + 1``; the band's virtual time
   advances to the tag of each request that leaves. A user who floods the band
   interleaves with the others instead of going ahead of them.
4. Then **FIFO** (``enqueued_at``), then the queue's own counter ``seq``.

A request re-queued after a failure goes to the head of its priority (tag equal
to the band's virtual time, below every waiting tag) and keeps its enqueue time.

The queue is bounded: a priority-p request is admitted only while the queue holds
fewer than ``max_size * admission_share[p]`` requests, so low priorities are
refused first and acknowledged requests are never evicted.

``max_size`` 0 makes a loss system (Erlang B's M/M/c/c): nothing is admitted to
wait; the Router admits a request only when it can start at once (nothing waits
and a compatible GPU has a free slot and the memory). Re-queued retries still wait.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from itertools import count

from .errors import InvalidValue
from .sorted_keys import SortedKeys
from .types import MAX_PRIORITY, PRIORITIES

DEFAULT_MAX_WAIT_S = {5: 30.0, 4: 60.0, 3: 120.0, 2: 300.0, 1: 600.0}
DEFAULT_ADMISSION_SHARE = {5: 1.0, 4: 0.9, 3: 0.8, 2: 0.7, 1: 0.6}
#: the SLA wait targets per priority, s (the simulator's ``sla.wait_target_s`` and the
#: service's ``sla.wait_target_s`` default to them; admission by predicted wait too)
DEFAULT_SLA_WAIT_S = {5: 2.0, 4: 5.0, 3: 10.0, 2: 30.0, 1: 60.0}


@dataclass(frozen=True)
class QueueConfig:
    """max_size in requests; max_wait_s per priority in seconds; admission_share per
    priority in (0, 1]; fair_share switches user interleaving inside a priority;
    admission_wait_s per priority in seconds is the longest predicted wait admitted
    (``Admission``; None: no admission by predicted wait); admission_rate_window_s is
    how far back, in seconds, the admitted work of higher priorities is measured."""

    max_size: int = 10_000
    max_wait_s: Mapping[int, float] = field(default_factory=lambda: dict(DEFAULT_MAX_WAIT_S))
    admission_share: Mapping[int, float] = field(
        default_factory=lambda: dict(DEFAULT_ADMISSION_SHARE)
    )
    fair_share: bool = True
    admission_wait_s: Mapping[int, float] | None = None
    admission_rate_window_s: float = 10.0

    @property
    def loss(self) -> bool:
        """A loss system: admit only what can start at once (``max_size`` 0)."""
        return self.max_size == 0

    def __post_init__(self) -> None:
        if isinstance(self.max_size, bool) or not isinstance(self.max_size, int):
            raise InvalidValue("queue.max_size", self.max_size, "must be an integer")
        if self.max_size < 0:
            raise InvalidValue("queue.max_size", self.max_size, "must be >= 0 (0: loss system)")
        w = self.admission_rate_window_s
        if isinstance(w, bool) or not isinstance(w, int | float) or not 0 < w < math.inf:
            raise InvalidValue("queue.admission_rate_window_s", w, "must be a finite number > 0")
        tables = [
            ("max_wait_s", self.max_wait_s, math.inf),
            ("admission_share", self.admission_share, 1.0),
        ]
        if self.admission_wait_s is not None:
            tables.append(("admission_wait_s", self.admission_wait_s, math.inf))
        for name, table, high in tables:
            if set(table) != set(PRIORITIES):
                raise InvalidValue(f"queue.{name}", dict(table), "needs one value per priority 1-5")
            for p, v in table.items():
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= high:
                    raise InvalidValue(f"queue.{name}.{p}", v, f"must be a number in (0, {high}]")


#: sort keys held in the sorted bands (plain tuples: compared in C, no key function);
#: ``seq`` is unique, so the request id at the end only comes along, never decides
_FairKey = tuple[float, float, int, str]  # (tag, enqueued_at, seq, request_id)
_AgeKey = tuple[float, int, str]  # (enqueued_at, seq, request_id)


class _Entry:
    __slots__ = ("age", "enqueued_at", "fair", "priority", "request_id", "tag", "user_id")

    def __init__(
        self, request_id: str, user_id: str, priority: int, enqueued_at: float, seq: int, tag: float
    ) -> None:
        self.request_id = request_id
        self.user_id = user_id
        self.priority = priority
        self.enqueued_at = enqueued_at
        self.tag = tag
        self.fair: _FairKey = (tag, enqueued_at, seq, request_id)
        self.age: _AgeKey = (enqueued_at, seq, request_id)


class CentralQueue:
    """Priority queue with aging, per-user fair share and a bound."""

    def __init__(self, config: QueueConfig | None = None) -> None:
        self.config = config or QueueConfig()
        self._seq = count()
        self._entries: dict[str, _Entry] = {}
        self._by_fair: dict[int, SortedKeys] = {p: SortedKeys() for p in PRIORITIES}
        self._by_age: dict[int, SortedKeys] = {p: SortedKeys() for p in PRIORITIES}
        self._vtime = dict.fromkeys(PRIORITIES, 0.0)
        self._user_tag: dict[int, dict[str, float]] = {p: {} for p in PRIORITIES}

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, request_id: object) -> bool:
        return request_id in self._entries

    def admits(self, priority: int, extra: int = 0) -> bool:
        """Whether a priority-``priority`` request may join now (``extra`` counts
        requests waiting elsewhere that share the bound)."""
        limit = self.config.max_size * self.config.admission_share[priority]
        return len(self._entries) + extra < limit

    def push(
        self,
        request_id: str,
        user_id: str,
        priority: int,
        enqueued_at: float,
        *,
        head: bool = False,
    ) -> None:
        """Add a request; ``head`` puts it first in its priority (failover re-queue)."""
        if request_id in self._entries:
            raise InvalidValue("request_id", request_id, "is already queued")
        vt = self._vtime[priority]
        if head:
            tag = vt
        elif self.config.fair_share:
            tags = self._user_tag[priority]
            tag = max(vt, tags.get(user_id, vt)) + 1.0
            tags[user_id] = tag
        else:
            tag = vt + 1.0  # all equal: FIFO by enqueue time
        e = _Entry(request_id, user_id, priority, enqueued_at, next(self._seq), tag)
        self._entries[request_id] = e
        self._by_fair[priority].add(e.fair)
        self._by_age[priority].add(e.age)

    def remove(self, request_id: str, *, dispatched: bool = False) -> bool:
        """Take a request out; ``dispatched`` advances its band's virtual time (a
        cancelled request does not). False if it was not queued."""
        e = self._entries.pop(request_id, None)
        if e is None:
            return False
        p = e.priority
        fair = self._by_fair[p]
        fair.remove(e.fair)
        self._by_age[p].remove(e.age)
        if dispatched and e.tag > self._vtime[p]:
            self._vtime[p] = e.tag
        if not len(fair):
            self._user_tag[p].clear()
        return True

    def _overdue(self, p: int, now: float) -> Iterator[tuple[float, int, int, str]]:
        wait = self.config.max_wait_s[p]
        for enqueued_at, seq, rid in self._by_age[p]:
            if now - enqueued_at < wait:
                return
            yield (enqueued_at + wait, -p, seq, rid)

    def is_overdue(self, request_id: str, now: float) -> bool:
        e = self._entries[request_id]
        return now - e.enqueued_at >= self.config.max_wait_s[e.priority]

    def ordered(self, now: float, limit: int | None = None) -> Iterator[str]:
        """Request ids in dispatch order at time ``now`` (lazily; at most ``limit``)."""
        n = 0
        cap = len(self._entries) if limit is None else limit
        waits = self.config.max_wait_s
        by_age = self._by_age
        aged = [p for p in PRIORITIES if len(by_age[p]) and now - by_age[p][0][0] >= waits[p]]
        if aged:
            for _deadline, _p, _seq, rid in heapq.merge(*(self._overdue(p, now) for p in aged)):
                if n >= cap:
                    return
                n += 1
                yield rid
        for p in reversed(PRIORITIES):
            wait = waits[p]
            check = p in aged
            for _tag, enqueued_at, _seq, rid in self._by_fair[p]:
                if check and now - enqueued_at >= wait:
                    continue  # already given as overdue
                if n >= cap:
                    return
                n += 1
                yield rid

    def count_from(self, priority: int) -> int:
        """Requests queued at ``priority`` or above (ahead of a new one, aging aside)."""
        by_fair = self._by_fair
        n = 0
        for p in range(priority, MAX_PRIORITY + 1):
            n += len(by_fair[p])
        return n

    def position(self, request_id: str) -> int:
        """1-based place in priority/fair-share order, not counting aging."""
        e = self._entries[request_id]
        by_fair = self._by_fair
        ahead = 0
        for p in PRIORITIES:
            if p > e.priority:
                ahead += len(by_fair[p])
        place: int = by_fair[e.priority].index(e.fair)
        return ahead + place + 1

    def entry(self, request_id: str) -> tuple[str, int, float]:
        """(user_id, priority, enqueued_at) of a queued request."""
        e = self._entries[request_id]
        return e.user_id, e.priority, e.enqueued_at
