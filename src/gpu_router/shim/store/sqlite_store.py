"""The :class:`~.protocol.Store` on SQLite: a :class:`~.journal.Journal` written through
:class:`~.group_commit.GroupCommit`.

Writes are staged and committed in batches (in the writer process, or on the event loop);
a read first commits what is staged or handed over, so it sees every write made so far.
Settings are written to the journal at once (autocommit), as they are rare.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from gpu_router.shim.config import JournalSection
from gpu_router.shim.store.group_commit import GroupCommit
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import JournalRecord


class SqliteStore:
    """A journal and its group commit, as one store (see :class:`~.protocol.Store`)."""

    def __init__(self, journal: Journal, commits: GroupCommit) -> None:
        self.journal = journal
        self.commits = commits
        self.on_lost: Callable[[list[str]], None] | None = None
        journal.on_lost = self._lost  # (the writer process's losses come through it too)
        self._closed = False

    @classmethod
    def open(cls, jc: JournalSection) -> SqliteStore:
        """The journal ``jc.path`` (a file, created if need be, or ``:memory:``), its
        intake log replayed into it, and its writer started."""
        journal = Journal(  # checkpoints: the committing side starts them
            jc.path, wal=jc.wal, synchronous=jc.synchronous, checkpoint_interval_s=None
        )
        try:
            commits = GroupCommit(
                journal,
                delay_s=jc.commit_delay_ms / 1000.0,
                lazy_delay_s=jc.lazy_commit_ms / 1000.0,
                max_batch=jc.max_batch,
                process=jc.writer == "process",
                intake=jc.intake_log,
                intake_dir=jc.intake_dir or None,
            )
        except BaseException:
            journal.close()
            raise
        return cls(journal, commits)

    def _lost(self, messages: list[str]) -> None:
        if self.on_lost is not None:
            self.on_lost(messages)

    # -- writes ---------------------------------------------------------------------------

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        return self.commits.insert(record)

    def update(self, record: JournalRecord) -> None:
        self.commits.update(record)

    def set_setting(self, key: str, value: Any) -> None:
        self.journal.set_setting(key, value)

    # -- reads (what is staged is committed first) ----------------------------------------

    def get(self, request_id: str) -> JournalRecord | None:
        self.commits.settle()
        return self.journal.get(request_id)

    def latest(self, client_request_id: str) -> JournalRecord | None:
        self.commits.settle()
        return self.journal.latest(client_request_id)

    def unfinished(self) -> list[JournalRecord]:
        self.commits.settle()
        return self.journal.unfinished()

    def since(self, wall_s: float) -> list[JournalRecord]:
        self.commits.settle()
        return list(self.journal.since(wall_s))

    def count_by_state(self) -> dict[str, int]:
        self.commits.settle()
        return self.journal.count_by_state()

    def pending_callbacks(self) -> list[JournalRecord]:
        self.commits.settle()
        return self.journal.pending_callbacks()

    def settings(self) -> dict[str, Any]:
        return self.journal.settings()

    # -- the writer -----------------------------------------------------------------------

    @property
    def writer_alive(self) -> bool:
        return self.commits.writer_process_alive

    def flush(self) -> None:
        self.commits.flush()

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self.commits.close()
        finally:
            self.journal.close()

    async def aclose(self) -> None:
        self.close()
