"""Group commit: many journal writes, one SQLite transaction.

A commit costs about the same whether it holds one row or a hundred, so the service does
not commit per write. It stages writes in the :class:`~.journal.Journal` and this class
commits them together:

- an acknowledgement (a new request that will be answered 200) is awaited: the handler
  awaits :meth:`GroupCommit.insert`, whose future resolves once the row is committed, so
  no 200 leaves before its row is durable. Such a write is committed ``delay_s`` after
  the first one of its batch (two milliseconds by default: the batch is whatever arrived
  meanwhile) when acknowledgements come closer together than that; when they come
  further apart, waiting would batch nothing and only add latency, so the batch commits
  on the next turn of the event loop (with whatever that turn produced);
- later state changes (dispatched, started, finished, callback delivered) are not
  awaited: :meth:`GroupCommit.update` stages them for the next batch, which commits at
  the latest ``lazy_delay_s`` after the first of them (or with the next acknowledgement);
- ``max_batch`` staged writes commit at once.

Everything runs on the event loop thread (SQLite in WAL mode with ``synchronous=NORMAL``
commits without an fsync, in a few tens of microseconds), so no lock is needed and
the order of writes is the order they were staged in.
"""

from __future__ import annotations

import asyncio

from .journal import Journal, JournalError, JournalRecord


class GroupCommit:
    def __init__(
        self,
        journal: Journal,
        *,
        delay_s: float = 0.002,
        lazy_delay_s: float = 0.02,
        max_batch: int = 256,
    ) -> None:
        self.journal = journal
        self.delay_s = delay_s
        self.lazy_delay_s = lazy_delay_s
        self.max_batch = max_batch
        self._handle: asyncio.TimerHandle | None = None
        self._due = float("inf")
        self._last_insert = float("-inf")
        self._gap = float("inf")  # moving average of the time between acknowledgements

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        """Stage a new request; the future resolves once its row is committed, or raises
        :class:`JournalError` if it could not be."""
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(err: JournalError | None) -> None:
            if not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

        self.journal.stage_insert(record, done)
        now = loop.time()
        gap = min(now - self._last_insert, 10 * self.delay_s)  # a pause is soon forgotten
        self._last_insert = now
        self._gap = 0.8 * self._gap + 0.2 * gap if self._gap < float("inf") else gap
        self._schedule(loop, self.delay_s if self._gap < self.delay_s else 0.0)
        return fut

    def update(self, record: JournalRecord) -> None:
        """Stage the record's changed row for the next batch (nobody waits for it)."""
        self.journal.stage_update(record)
        self._schedule(asyncio.get_running_loop(), self.lazy_delay_s)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if self.journal.staged >= self.max_batch:
            self.flush()
            return
        due = loop.time() + delay
        if due < self._due:
            if self._handle is not None:
                self._handle.cancel()
            self._due = due
            self._handle = loop.call_at(due, self.flush)

    def flush(self) -> None:
        """Commit everything staged now."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = float("inf")
        self.journal.commit_staged()
