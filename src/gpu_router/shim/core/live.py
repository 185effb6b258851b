"""The requests the service holds in memory: :class:`Live` ones and :class:`LiveRequests`.

A request is *live* from its admission until it reaches a terminal state: its journal
row plus what only memory holds (the policy ``Request``, the attempt number, the job on
its worker, progress). The last ``recent_max`` finished requests stay in memory for the
status API; older ones are read back from the store. Every change of a record goes
through :meth:`LiveRequests.change`, which hands its row to the store (``Store.update``).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from gpu_router.policy import Dispatch, Request
from gpu_router.shim.store import JournalRecord, Store


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
    last_gpu: str | None = None  # the GPU of its last attempt (a re-dispatch is a re-route)
    reroute_reason: str | None = None  # why its last attempt stopped

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

    def admit(self, live: Live) -> None:
        self.live[live.rec.request_id] = live

    def insert(self, live: Live) -> asyncio.Future[None]:
        """Admit a new submission and stage its row; the future resolves once it is durable."""
        live.committed = self.store.insert(live.rec)
        self.live[live.rec.request_id] = live
        return live.committed

    def pop(self, rid: str) -> Live | None:
        return self.live.pop(rid, None)

    def remember(self, rec: JournalRecord) -> None:
        """Keep a finished record in memory for the status API (the oldest is dropped)."""
        self.recent[rec.request_id] = rec
        if len(self.recent) > self.recent_max:
            self.recent.popitem(last=False)

    def change(self, rec: JournalRecord, **changes: Any) -> None:
        """Change the record and stage its row for the next group commit (nobody waits)."""
        for name, value in changes.items():
            setattr(rec, name, value)
        self.store.update(rec)
