"""Group commit on a writer thread: many journal writes, one SQLite transaction, off the
event loop.

A commit costs about the same whether it holds one row or a hundred, and SQLite's own
work (B-tree inserts, the WAL append) releases the GIL, so the service neither commits
per write nor on the event loop. It stages writes in the :class:`~.journal.Journal`; when a new
request is staged (or ``delay_s`` later, when set, to gather more) the staged rows are
built (on the loop thread, a consistent snapshot of the records) and handed to a writer
thread, which commits whatever has been handed over meanwhile in one transaction: while
one batch commits, the next gathers, and the event loop goes on serving.

- an acknowledgement (a new request that will be answered 200) is awaited: the handler
  awaits :meth:`GroupCommit.insert`, whose future resolves on the loop once the row is
  committed, so no 200 leaves before its row is durable;
- later state changes (dispatched, started, finished, callback delivered) are not
  awaited: :meth:`GroupCommit.update` stages them for the next hand-over, at the latest
  ``lazy_delay_s`` later (or with the next acknowledgement), so that the several changes
  of a short job often cost one row write;
- ``max_batch`` staged writes are handed over at once.

Batches are committed in the order they were handed over. A read of the journal that may
concern staged or handed-over writes waits for them to be committed first
(:meth:`sync`, through ``Journal.before_read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import threading

from .journal import Done, Journal, JournalError, JournalRecord, StagedBatch


class GroupCommit:
    def __init__(
        self,
        journal: Journal,
        *,
        delay_s: float = 0.0,
        lazy_delay_s: float = 0.02,
        max_batch: int = 256,
    ) -> None:
        self.journal = journal
        self.delay_s = delay_s
        self.lazy_delay_s = lazy_delay_s
        self.max_batch = max_batch
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._due = float("inf")
        self._cond = threading.Condition()  # sync() waits on it
        self._syncing = 0  # threads waiting in sync()
        self._queue: queue.SimpleQueue[StagedBatch | None] = queue.SimpleQueue()
        self._handed = 0  # batches handed over ...
        self._committed = 0  # ... and committed (or failed) by the writer
        self._closed = False
        self._thread = threading.Thread(target=self._write, name="journal-writer", daemon=True)
        self._thread.start()
        journal.before_read = self._before_read

    # -- the event loop's side -------------------------------------------------------------

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        """Stage a new request; the future resolves once its row is committed, or raises
        :class:`JournalError` if it could not be."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()

        def done(err: JournalError | None) -> None:
            if not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

        self.journal.stage_insert(record, done)
        if self.delay_s:
            self._schedule(loop, self.delay_s)
        else:  # at once: the writer commits while the event loop goes on
            self._hand_over()
        return fut

    def update(self, record: JournalRecord) -> None:
        """Stage the record's changed row for a coming batch (nobody waits for it)."""
        self.journal.stage_update(record)
        loop = self._loop = asyncio.get_running_loop()
        self._schedule(loop, self.lazy_delay_s)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if self.journal.staged >= self.max_batch:
            self._hand_over()
            return
        due = loop.time() + delay
        if due < self._due:
            if self._handle is not None:
                self._handle.cancel()
            self._due = due
            self._handle = (
                loop.call_at(due, self._hand_over) if delay else loop.call_soon(self._hand_over)
            )

    def _hand_over(self) -> None:
        """Give everything staged to the writer thread."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = float("inf")
        if not self.journal.staged:
            return
        batch = self.journal.take_staged()
        if self._closed or not self._thread.is_alive():  # after close: on this thread
            _run_all(self.journal.commit_batch(batch))
            return
        self._handed += 1
        self._queue.put(batch)  # a C queue: no Python-level lock work on the loop thread

    def sync(self) -> None:
        """Hand over what is staged and block until the writer has committed all of it."""
        self._hand_over()
        target = self._handed
        with self._cond:
            self._syncing += 1
            try:
                self._cond.wait_for(
                    lambda: self._committed >= target or not self._thread.is_alive()
                )
            finally:
                self._syncing -= 1

    def _before_read(self, request_id: str | None) -> None:
        if self._handed > self._committed or self.journal.staged:
            self.sync()

    def flush(self) -> None:
        """Commit everything staged or handed over, and wait for it (shutdown, tests)."""
        self.sync()

    def close(self) -> None:
        """Commit what is left and stop the writer thread."""
        if self._closed:
            return
        self.sync()
        self._closed = True
        self._queue.put(None)
        self._thread.join()
        if self.journal.before_read == self._before_read:
            self.journal.before_read = None

    # -- the writer thread -------------------------------------------------------------------

    def _write(self) -> None:
        queue = self._queue
        try:
            while True:
                batch = queue.get()
                if batch is None:
                    return  # closed (everything before the sentinel is committed)
                taken = 1
                stop = False
                while not queue.empty():  # whatever else was handed over rides along
                    more = queue.get_nowait()
                    if more is None:
                        stop = True
                        break
                    batch.extend(more)
                    taken += 1
                try:
                    fates = self.journal.commit_batch(batch)
                except Exception as exc:  # SQLite errors come back as fates; anything
                    err = JournalError(f"journal writer: {exc!r}")  # else must not kill us
                    fates = [(done, err) for _rid, _row, done in batch.inserts if done]
                self._committed += taken  # only this thread writes it
                if self._syncing:
                    with self._cond:
                        self._cond.notify_all()
                if fates:
                    self._tell(fates)
                if stop:
                    return
        finally:  # nobody waits forever on a dead writer (sync checks is_alive)
            with self._cond:
                self._cond.notify_all()

    def _tell(self, fates: list[tuple[Done, JournalError | None]]) -> None:
        """Run the staged inserts' ``done`` callbacks on the event loop."""
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
            loop.call_soon_threadsafe(_run_all, fates)


def _run_all(fates: list[tuple[Done, JournalError | None]]) -> None:
    for done, fate in fates:
        done(fate)
