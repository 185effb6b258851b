"""Group commit: many journal writes, one SQLite transaction, off the event loop, on a
writer process (the service's default, ``journal.writer: process``) or a writer thread.

A commit costs about the same whether it holds one row or a hundred, and SQLite's own
work (B-tree inserts, the WAL append) releases the GIL, so the service neither commits
per write nor on the event loop. It stages writes in the :class:`~.journal.Journal`; when a new
request is staged (or ``delay_s`` later, when set, to gather more) the staged rows are
built (on the loop thread, a consistent snapshot of the records) and handed to a writer
thread, which commits whatever has been handed over meanwhile in one transaction: while
one batch commits, the next gathers, and the event loop goes on serving.

- an acknowledgement (a new request that will be answered 200) is awaited: the handler
  awaits :meth:`GroupCommit.insert`, whose future resolves once the row is durable, so no
  200 leaves before that. With a writer process and ``synchronous`` NORMAL or OFF (the
  default) the row is made durable by one append to the intake log
  (``shim.store.intake_log``), the same guarantee as such a commit, and the future is resolved
  at once; the row then rides to the writer with the state changes (``lazy_delay_s``).
  Otherwise the future resolves on the loop once the row is committed;
- later state changes (dispatched, started, finished, callback delivered) are not
  awaited: :meth:`GroupCommit.update` stages them for the next hand-over, at the latest
  ``lazy_delay_s`` later (or with the next acknowledgement), so that the several changes
  of a short job often cost one row write;
- ``max_batch`` staged writes are handed over at once.

The writer process (``shim.store.writer_process``) is what the service runs: a thread of this
process needs the GIL back after each SQLite call, and under load it waited for it most
of each commit (see that module). If the process dies, the batches it had not answered,
and every later one, are committed on the event loop (:meth:`GroupCommit._child_died`).

Batches are committed in the order they were handed over. A read of the journal that may
concern staged or handed-over writes waits for them to be committed first
(:meth:`sync`, through ``Journal.before_read``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from collections import deque
from functools import partial
from typing import Any

from gpu_router.shim.store import intake_log
from gpu_router.shim.store.intake_log import IntakeLog
from gpu_router.shim.store.journal import (
    Done,
    DuplicateRequest,
    Journal,
    JournalError,
    JournalRecord,
    StagedBatch,
)
from gpu_router.shim.store.rows import COLUMNS, row_values
from gpu_router.shim.store.writer_process import WriterProcess

_AT = COLUMNS.index("submitted_at")  # in a new row's values
_HASH = COLUMNS.index("body_hash")

logger = logging.getLogger(__name__)


class GroupCommit:
    def __init__(
        self,
        journal: Journal,
        *,
        delay_s: float = 0.0,
        lazy_delay_s: float = 0.02,
        max_batch: int = 256,
        process: bool = False,
        checkpoint_interval_s: float | None = 1.0,
        intake: bool = True,
        intake_dir: str | None = None,
        intake_segment_bytes: int = intake_log.SEGMENT_BYTES,
    ) -> None:
        """``process``: commit in a child process (``shim.store.writer_process``) rather than a
        thread of this one; for a journal file only (``:memory:`` is per connection).
        ``intake``: with a writer process and ``synchronous`` NORMAL or OFF, make a new
        request durable in the intake log (``shim.store.intake_log``) and acknowledge it at
        once, rather than when the writer process has committed it; ``intake_dir``: where
        the log goes (None: ``intake_log.default_dir``). Rows left in an intake log by a
        service that died are copied into the journal here, first."""
        if journal.path != ":memory:":
            intake_log.replay(journal, intake_dir)
        self.journal = journal
        self.checkpoint_interval_s = checkpoint_interval_s
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
        self._proc: WriterProcess | None = None
        self._sent: dict[int, StagedBatch] = {}  # batches with the child, by number
        if process and journal.path != ":memory:" and journal.wal:  # (without WAL, two
            # processes would lock each other out of the file on every read and write)
            self._proc = WriterProcess(
                journal.path,
                wal=journal.wal,
                synchronous=journal.synchronous,
                checkpoint_interval_s=checkpoint_interval_s,
                on_message=self._answered,
                on_death=self._child_died,
            )
        else:
            self._thread.start()
        journal.before_read = self._before_read
        self._intake: IntakeLog | None = None
        self._inflight: set[str] = set()  # ids in the intake log, not committed yet
        self._closed_segments: deque[tuple[str, int]] = deque()  # (path, last batch in it)
        #: logged (acknowledged) rows whose commit failed, by id: staged again until one
        #: commits; meanwhile no segment is deleted and new requests wait for their commit
        self._retrying: set[str] = set()
        #: hash() of every request_id with a row or in the intake log: a new id is told
        #: apart from a taken one in memory (a query per submission, on the event loop,
        #: waited out the writer's locks for milliseconds at times); about 70 bytes each
        self._known: set[int] = set()
        if intake and self._proc is not None and journal.synchronous in ("NORMAL", "OFF"):
            try:
                self._known = {hash(rid) for rid in journal.request_ids()}
                self._intake = IntakeLog(
                    intake_log.prefix(journal.path, intake_dir),
                    segment_bytes=intake_segment_bytes,
                )
            except Exception:
                self.close()
                raise

    @property
    def writer_process_alive(self) -> bool:
        """Whether commits go to a live writer process (False: a thread or the loop)."""
        return self._proc is not None and self._proc.alive and not self._closed

    # -- the event loop's side -------------------------------------------------------------

    @property
    def intake(self) -> bool:
        """Whether new requests are made durable in the intake log (not by their commit):
        with a live writer process, and not while logged rows fail to commit (a journal
        that cannot be written then answers 503, as without the log)."""
        return self._intake is not None and self.writer_process_alive and not self._retrying

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        """Stage a new request; the future resolves once its row is durable (in the intake
        log, at once; else committed), or raises :class:`JournalError` if it could not be
        (:class:`DuplicateRequest`: the request_id has a row already)."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        if self.intake:
            self._log_insert(record, fut, loop)
            return fut

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

    def _log_insert(
        self, record: JournalRecord, fut: asyncio.Future[None], loop: asyncio.AbstractEventLoop
    ) -> None:
        assert self._intake is not None
        rid = record.request_id
        known = hash(rid)
        try:  # a known hash is this id (taken) or, hardly ever, another one: the rows say
            if known in self._known and (
                rid in self._inflight or rid in self.journal.stored_ids([rid])
            ):
                raise DuplicateRequest(f"request_id {rid!r} is taken")
            values = row_values(record)
            self._intake.append(values)
        except JournalError as exc:
            fut.set_exception(exc)
            return
        except Exception as exc:  # the journal's read failed (SQLite error)
            fut.set_exception(JournalError(f"journal: {exc!r}"))
            return
        self._inflight.add(rid)
        self._known.add(known)
        fut.set_result(None)
        self.journal.stage_insert(record, partial(self._logged_committed, record), values)
        if self._intake.size >= self._intake.segment_bytes:
            self._hand_over()  # every row of the segment is with the writer now
            self._closed_segments.append((self._intake.rotate(), self._handed))
        else:
            self._schedule(loop, self.lazy_delay_s)

    def _logged_committed(self, record: JournalRecord, err: JournalError | None) -> None:
        """The fate of a logged (acknowledged) row's commit. A failure stages the row
        again, built afresh (with every change since), for the next batch; its segment
        stays, so a restart would replay it."""
        rid = record.request_id
        if err is None:
            self._retrying.discard(rid)
            return
        if isinstance(err, DuplicateRequest):  # another row holds the id: nothing to retry
            logger.error("journal: acknowledged request %s has no row of its own: %s", rid, err)
            self._retrying.discard(rid)
            return
        if rid not in self._retrying:
            logger.error(
                "journal: acknowledged request %s not committed yet, retrying: %s", rid, err
            )
        self._retrying.add(rid)
        self.journal.stage_insert(record, partial(self._logged_committed, record))
        if self._loop is not None and not self._closed and not self._loop.is_closed():
            self._schedule(self._loop, self.lazy_delay_s)

    def _settled(self, batch: StagedBatch) -> None:
        """A batch is committed (or failed): its logged rows are no longer in flight, and
        the segments it completes can go."""
        if self._intake is None:
            return
        for rid, _values, _done in batch.inserts:
            if rid not in self._retrying:
                self._inflight.discard(rid)
        segments = self._closed_segments
        while segments and segments[0][1] <= self._committed and not self._retrying:
            intake_log.remove_segment(segments.popleft()[0])

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
        """Give everything staged to the writer (process or thread)."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = float("inf")
        if not self.journal.staged:
            return
        batch = self.journal.take_staged()
        proc = self._proc
        if proc is not None and proc.alive and not self._closed:
            self._handed += 1
            self._sent[self._handed] = batch
            inserts = [(rid, values) for rid, values, _done in batch.inserts]
            proc.send((self._handed, inserts, list(batch.updates.values())), self._loop)
            return
        if self._closed or not self._thread.is_alive():  # after close: on this thread
            self._handed += 1
            try:
                _run_all(self.journal.commit_batch(batch))
            finally:
                self._committed += 1
                self._settled(batch)
            return
        self._handed += 1
        self._queue.put(batch)  # a C queue: no Python-level lock work on the loop thread

    def sync(self) -> None:
        """Hand over what is staged and block until the writer has committed all of it."""
        self._hand_over()
        target = self._handed
        if self._proc is not None:
            self._proc.wait_until(lambda: self._committed >= target)
            return
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
        """Commit what is left and stop the writer."""
        if self._closed:
            return
        self.sync()
        self._closed = True
        if self._proc is not None:
            self._proc.close()
            self._child_died()  # nothing is left with it; a leftover would be replayed here
            if self._intake is not None:
                if self._retrying:  # left for the next start's replay
                    self._intake.close()
                else:
                    self._intake.remove_all()  # everything in it is committed
        else:
            self._queue.put(None)
            self._thread.join()
        if self.journal.before_read == self._before_read:
            self.journal.before_read = None

    # -- the writer process -------------------------------------------------------------------

    def _answered(self, msg: tuple[Any, ...]) -> None:
        """A message of the writer process (on the event loop, or in :meth:`sync`)."""
        if msg[0] == "lost":
            if self.journal.on_lost is not None:
                self.journal.on_lost(msg[1])
            return
        _, seq, failures = msg
        batch = self._sent.pop(seq, None)
        self._committed += 1  # counted whatever follows: sync() must not wait for it again
        if batch is None:  # pragma: no cover - a protocol bug
            logger.error("journal writer answered unknown batch %s", seq)
            return
        failed = {n: (DuplicateRequest if dup else JournalError)(text) for n, dup, text in failures}
        _run_all(
            [
                (done, failed.get(n))
                for n, (_rid, _row, done) in enumerate(batch.inserts)
                if done is not None
            ]
        )
        self._settled(batch)

    def _child_died(self) -> None:
        """The writer process is gone: the batches it had not answered are settled here,
        and every later one is committed on the event loop.

        The child commits batches in order (merging neighbours into one transaction), so
        the unanswered batches it did commit come first: up to the last one with a new row
        in the journal that is its own (same ``submitted_at`` and body hash). Those are
        answered as committed (an insert whose row is another request's failed as a
        duplicate) and not written again, which could put older updates back over newer
        ones; the batches after it are committed now, in order."""
        proc = self._proc
        if proc is not None and not self._closed:
            code = proc.proc.poll()
            logger.error(
                "journal writer process died (exit %s); committing on the event loop", code
            )
            self.journal.start_checkpoints(self.checkpoint_interval_s or 1.0)
        pending = [self._sent.pop(seq) for seq in sorted(self._sent)]
        try:
            stored = self.journal.stored_ids(
                [rid for batch in pending for rid, _values, _done in batch.inserts]
            )
            last = max(
                (
                    n
                    for n, batch in enumerate(pending)
                    if any(_is_mine(stored, ins) for ins in batch.inserts)
                ),
                default=-1,
            )
        except Exception as exc:  # cannot tell: every waiter hears a failure
            logger.exception("journal writer: reading back its batches failed")
            stored, last = {}, len(pending) - 1
            err: JournalError | None = JournalError(f"journal writer died: {exc!r}")
        else:
            err = None
        for n, batch in enumerate(pending):
            self._committed += 1
            try:
                if n <= last:
                    _run_all(
                        [
                            (done, err or (None if _is_mine(stored, ins) else _taken(ins[0])))
                            for ins in batch.inserts
                            if (done := ins[2]) is not None
                        ]
                    )
                else:
                    _run_all(self.journal.commit_batch(batch))
            except Exception:  # one batch's trouble must not strand the ones after it
                logger.exception("journal writer: settling a batch after its death failed")
            self._settled(batch)

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
        try:
            done(fate)
        except Exception:  # e.g. a future of a loop closed meanwhile: the others still run
            logger.exception("journal: a commit's waiter failed")


def _is_mine(stored: dict[str, tuple[float, str]], insert: tuple[str, list[Any], Any]) -> bool:
    """Whether the stored row of this staged insert's id is this very row."""
    rid, values, _done = insert
    return stored.get(rid) == (values[_AT], values[_HASH])


def _taken(rid: str) -> DuplicateRequest:
    return DuplicateRequest(f"request_id {rid!r} is taken")
