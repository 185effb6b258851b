"""Group commit: many journal writes, one SQLite transaction, in a writer process (the
service's default, ``journal.writer: process``) or on the event loop.

A commit costs about the same whether it holds one row or a hundred, so the service does
not commit per write. It stages writes (``shim.store.batch``); when a new request is
staged (or ``delay_s`` later, when set, to gather more) the staged rows are built (on the
loop thread, a consistent snapshot of the records) and handed over in one batch. The
writer process (``shim.store.writer_process``) commits whatever has been handed over
meanwhile in one transaction: while one batch commits, the next gathers, and the event
loop goes on serving. Without a writer process (a ``:memory:`` journal, one without WAL,
``writer: loop``, or once the process died) a batch is committed on the event loop when
it is handed over.

- an acknowledgement (a new request that will be answered 200) is awaited: the handler
  awaits :meth:`GroupCommit.insert`, whose future resolves once the row is durable, so no
  200 leaves before that. With a writer process and ``synchronous`` NORMAL or OFF (the
  default) the row is made durable by one append to the intake log
  (``shim.store.intake_log``, kept by ``shim.store.intake_acks``), the same guarantee as
  such a commit, and the future is resolved at once; the row then rides to the writer with
  the state changes (``lazy_delay_s``). Otherwise the future resolves once the row is
  committed;
- later state changes (dispatched, started, finished, callback delivered) are not
  awaited: :meth:`GroupCommit.update` stages them for the next hand-over, at the latest
  ``lazy_delay_s`` later (or with the next acknowledgement), so that the several changes
  of a short job often cost one row write;
- ``max_batch`` staged writes are handed over at once.

If the writer process dies, the batches it had not answered are settled, and every later
one is committed on the event loop (:meth:`GroupCommit._child_died`). Batches are
committed in the order they were handed over; :meth:`settle` (before a read that may
concern staged or handed-over writes) waits for them.
"""

from __future__ import annotations

import asyncio
import logging
from functools import partial
from typing import Any

from gpu_router.shim.store import intake_log
from gpu_router.shim.store.batch import StagedBatch, Staging
from gpu_router.shim.store.intake_acks import IntakeAcks
from gpu_router.shim.store.journal import Journal
from gpu_router.shim.store.records import Done, DuplicateRequest, JournalError, JournalRecord
from gpu_router.shim.store.rows import COLUMNS
from gpu_router.shim.store.writer_process import WriterProcess

_AT = COLUMNS.index("submitted_at")  # in a new row's values
_HASH = COLUMNS.index("body_hash")

logger = logging.getLogger(__name__)


class GroupCommit:
    """Stages a journal's writes and commits them in batches; every call on the event
    loop's thread (``flush``/``close`` also without a running loop)."""

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
        """``process``: commit in a child process (``shim.store.writer_process``) rather
        than on the event loop; for a WAL journal file only (``:memory:`` is per
        connection, and without WAL two processes lock each other out of the file).
        ``checkpoint_interval_s``: how often the committing side checkpoints (s).
        ``intake``: with a writer process and ``synchronous`` NORMAL or OFF, make a new
        request durable in the intake log and acknowledge it at once, rather than when it
        is committed; ``intake_dir``: where the log goes (None: beside the journal). Rows
        left in an intake log by a service that died are copied into the journal here,
        first."""
        if journal.path != ":memory:":
            intake_log.replay(journal, intake_dir)
        self.journal = journal
        self.checkpoint_interval_s = checkpoint_interval_s
        self.delay_s = delay_s
        self.lazy_delay_s = lazy_delay_s
        self.max_batch = max_batch
        self._staging = Staging()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handle: asyncio.TimerHandle | asyncio.Handle | None = None
        self._due = float("inf")
        self._handed = 0  # batches handed over ...
        self._committed = 0  # ... and committed (or failed)
        self._closed = False
        self._proc: WriterProcess | None = None
        self._sent: dict[int, StagedBatch] = {}  # batches with the child, by number
        self._acks: IntakeAcks | None = None
        if not (process and journal.path != ":memory:" and journal.wal):
            journal.start_checkpoints(checkpoint_interval_s or 1.0)  # (WAL files only)
            return
        self._proc = WriterProcess(
            journal.path,
            wal=journal.wal,
            synchronous=journal.synchronous,
            checkpoint_interval_s=checkpoint_interval_s,
            on_message=self._answered,
            on_death=self._child_died,
        )
        if intake and journal.synchronous in ("NORMAL", "OFF"):
            try:
                self._acks = IntakeAcks(journal, intake_dir, intake_segment_bytes)
            except Exception:
                self.close()
                raise

    @property
    def writer_process_alive(self) -> bool:
        """Whether commits go to a live writer process (False: on the event loop)."""
        return self._proc is not None and self._proc.alive and not self._closed

    @property
    def intake(self) -> bool:
        """Whether new requests are made durable in the intake log (not by their commit):
        with a live writer process, and not while logged rows fail to commit (a journal
        that cannot be written then answers 503, as without the log)."""
        return self._acks is not None and self.writer_process_alive and not self._acks.retrying

    def insert(self, record: JournalRecord) -> asyncio.Future[None]:
        """Stage a new request; the future resolves once its row is durable (in the intake
        log, at once; else committed), or raises :class:`JournalError` if it could not be
        (:class:`DuplicateRequest`: the request_id has a row already)."""
        loop = self._loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        acks = self._acks if self.intake else None
        if acks is not None:
            try:
                values = acks.append(record)
            except JournalError as exc:
                fut.set_exception(exc)
                return fut
            fut.set_result(None)
            self._staging.insert(record, partial(self._logged_committed, record), values)
            if acks.full:
                self._hand_over()  # every row of the segment is handed over now
                acks.rotate(self._handed)
            else:
                self._schedule(loop, self.lazy_delay_s)
            return fut

        def done(err: JournalError | None) -> None:
            if not fut.done():
                if err is None:
                    fut.set_result(None)
                else:
                    fut.set_exception(err)

        self._staging.insert(record, done)
        if self.delay_s:
            self._schedule(loop, self.delay_s)
        else:  # at once: a writer process commits while the event loop goes on
            self._hand_over()
        return fut

    def _logged_committed(self, record: JournalRecord, err: JournalError | None) -> None:
        """The fate of a logged (acknowledged) row's commit: a failure stages the row
        again, built afresh (with every change since), for a later batch."""
        if self._acks is None:
            raise RuntimeError("a logged commit without an intake log")
        if self._acks.failed(record.request_id, err):
            self._staging.insert(record, partial(self._logged_committed, record))
            loop = self._loop
            if loop is not None and not self._closed and not loop.is_closed():
                self._arm(loop, self.lazy_delay_s)  # (never at once: no retry loop here)

    def update(self, record: JournalRecord) -> None:
        """Stage the record's changed row for a coming batch (nobody waits for it)."""
        self._staging.update(record)
        loop = self._loop = asyncio.get_running_loop()
        self._schedule(loop, self.lazy_delay_s)

    def _schedule(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        if len(self._staging) >= self.max_batch:
            self._hand_over()
        else:
            self._arm(loop, delay)

    def _arm(self, loop: asyncio.AbstractEventLoop, delay: float) -> None:
        """Hand over ``delay`` seconds from now at the latest."""
        due = loop.time() + delay
        if due < self._due:
            if self._handle is not None:
                self._handle.cancel()
            self._due = due
            self._handle = (
                loop.call_at(due, self._hand_over) if delay else loop.call_soon(self._hand_over)
            )

    def _hand_over(self) -> None:
        """Send everything staged to the writer process, or commit it here."""
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._due = float("inf")
        if not self._staging:
            return
        batch = self._staging.take()
        self._handed += 1
        proc = self._proc
        if proc is not None and proc.alive and not self._closed:
            self._sent[self._handed] = batch
            inserts = [(rid, values) for rid, values, _done in batch.inserts]
            proc.send((self._handed, inserts, list(batch.updates.values())), self._loop)
        else:
            self._commit_here(batch)

    def _commit_here(self, batch: StagedBatch) -> None:
        """Commit a batch on this thread and tell its waiters."""
        try:
            fates = self.journal.commit_batch(batch)
        except Exception as exc:  # SQLite errors come back as fates; anything else
            logger.exception("journal: a batch's commit failed")  # fails this batch only
            err = JournalError(f"journal writer: {exc!r}")
            fates = [(done, err) for _rid, _row, done in batch.inserts if done is not None]
        self._committed += 1
        _run_all(fates)
        self._settled(batch)

    def _settled(self, batch: StagedBatch) -> None:
        if self._acks is not None:
            self._acks.settled(batch, self._committed)

    def settle(self) -> None:
        """Before a read: commit what is staged or handed over, if anything is."""
        if self._handed > self._committed or self._staging:
            self.flush()

    def flush(self) -> None:
        """Hand over what is staged and block until all of it is committed."""
        self._hand_over()
        if self._proc is not None:
            target = self._handed
            self._proc.wait_until(lambda: self._committed >= target)

    def close(self) -> None:
        """Commit what is left and stop the writer process."""
        if self._closed:
            return
        self.flush()
        self._closed = True
        if self._proc is not None:
            self._proc.close()
            self._child_died()  # nothing is left with it; a leftover is committed here
        if self._acks is not None:
            self._acks.close()

    # -- the writer process -------------------------------------------------------------

    def _answered(self, msg: tuple[Any, ...]) -> None:
        """A message of the writer process (on the event loop, or in :meth:`flush`)."""
        if msg[0] == "lost":
            if self.journal.on_lost is not None:
                self.journal.on_lost(msg[1])
            return
        _, seq, failures = msg
        batch = self._sent.pop(seq, None)
        self._committed += 1  # counted whatever follows: flush() must not wait for it again
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
            if n > last:
                self._commit_here(batch)
                continue
            self._committed += 1
            try:
                _run_all(
                    [
                        (done, err or (None if _is_mine(stored, ins) else _taken(ins[0])))
                        for ins in batch.inserts
                        if (done := ins[2]) is not None
                    ]
                )
            except Exception:  # one batch's trouble must not strand the ones after it
                logger.exception("journal writer: settling a batch after its death failed")
            self._settled(batch)


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
