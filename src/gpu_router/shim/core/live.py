"""The requests the service holds in memory: :class:`Live` ones and :class:`LiveRequests`.

A request is *live* from its admission until it reaches a terminal state: its journal
row plus what only memory holds (the policy ``Request``, the attempt number, the job on
its worker, progress). The last ``recent_max`` finished requests stay in memory for the
status API; older ones are read back from the store. Every change of a record goes
through :meth:`LiveRequests.change`, which hands its row to the store (``Store.update``).
Requests are keyed by the store key (``store.request_key``: request ids are per user);
:meth:`LiveRequests.latest` finds one by its bare request_id, for callers that act for
every user.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gpu_router.policy import Dispatch, Request
from gpu_router.shim.store import JournalRecord, Store, client_id


@dataclass(slots=True)
class Live:
    """A request that is not terminal yet: its journal row plus what only memory holds."""

    rec: JournalRecord
    request: Request
    traceparent: str | None
    attempt: int = 0
    job_id: str | None = None
    progress: float = 0.0
    result: Any = None
    started_mono: float | None = None
    reattach: tuple[str, str] | None = None  # (gpu_id, job_id) found running after a restart
    committed: asyncio.Future[None] | None = None  # the insert of a new submission
    held: Dispatch | None = None  # its dispatch, started once the insert is committed
    unjournaled: bool = False  # the insert failed: nothing more is written for it

    @property
    def pending_commit(self) -> bool:
        """Whether its insert is not known durable yet (or failed: it never runs)."""
        c = self.committed
        return c is not None and (not c.done() or c.cancelled() or c.exception() is not None)


class LiveRequests:
    """Live requests by id, the recently finished ones, and the writes of their rows."""

    def __init__(self, store: Store, *, recent_max: int = 10_000):
        self.store = store
        self.recent_max = recent_max
        self.live: dict[str, Live] = {}
        self.recent: OrderedDict[str, JournalRecord] = OrderedDict()
        #: bare request_id -> the key of its last submission held in memory
        self.latest_key: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.live)

    def get(self, rid: str) -> Live | None:
        return self.live.get(rid)

    def lookup(self, rid: str) -> JournalRecord | None:
        """A request's record: live, recently finished, or from the journal."""
        live = self.live.get(rid)
        if live is not None:
            return live.rec
        rec = self.recent.get(rid)
        return rec if rec is not None else self.store.get(rid)

    def known(self, rid: str) -> JournalRecord | None:
        """A request's record if memory has it (live or recently finished), no journal read."""
        live = self.live.get(rid)
        return live.rec if live is not None else self.recent.get(rid)

    def latest(self, request_id: str) -> JournalRecord | None:
        """The last submitted request of any user whose own id is ``request_id``: the
        one memory holds, else the store's."""
        key = self.latest_key.get(request_id)
        rec = None if key is None else self.known(key)
        return rec if rec is not None else self.store.latest(request_id)

    def admit(self, live: Live) -> None:
        key = live.rec.request_id
        self.live[key] = live
        self.latest_key[client_id(key)] = key

    def insert(self, live: Live) -> asyncio.Future[None]:
        """Admit a new submission and stage its row; the future resolves once it is durable."""
        live.committed = self.store.insert(live.rec)
        self.admit(live)
        return live.committed

    def pop(self, rid: str) -> Live | None:
        return self.live.pop(rid, None)

    def remember(self, rec: JournalRecord) -> None:
        """Keep a finished record in memory for the status API (the oldest is dropped)."""
        self.recent[rec.request_id] = rec
        if len(self.recent) > self.recent_max:
            old, _ = self.recent.popitem(last=False)
            cid = client_id(old)
            if self.latest_key.get(cid) == old and old not in self.live:
                del self.latest_key[cid]

    def change(self, rec: JournalRecord, **changes: Any) -> None:
        """Change the record and stage its row for the next group commit (nobody waits)."""
        for name, value in changes.items():
            setattr(rec, name, value)
        self.store.update(rec)
