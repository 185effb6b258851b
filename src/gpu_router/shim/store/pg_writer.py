"""The PostgreSQL store's writer: a thread with its own connection that commits the
batches the event loop hands over, many at once.

The loop hands over :class:`~.batch.StagedBatch` es (:meth:`PgWriter.hand`) and goes on;
the thread takes every batch handed over since its last commit and writes them in one
statement, its own transaction (``shim.store.pg_schema``: one round trip, so the thread
takes the GIL back once per batch), so while one commits the next gathers: group commit,
on top of PostgreSQL's own (``synchronous_commit`` on: a commit returns once its WAL is
flushed). psycopg releases the GIL while it waits on the server.

A new row's ``done`` is told its fate (None once committed, else the error) on the loop,
``settled`` being how the thread gets there (one call per transaction). When the
connection is lost or PostgreSQL is down, the batch's new rows fail at once (their
submissions answer 503) and its state changes are kept and written with the first
commit once the connection is back; while it is down, new rows fail without waiting and
a reconnection is tried every ``retry_s``. A commit that fails for another reason loses
its state changes (told to ``on_lost``).

Fencing: once ``epoch`` is set (a leader's lease epoch), every batch statement is fenced
(``pg_schema.FENCE``): PostgreSQL writes nothing of it unless that epoch is still the
lease's. A refused batch fails its new rows (:class:`StoreFenced`) and loses its state
changes, and so does every batch after it (the writer is ``fenced`` for good);
``on_fenced`` is told once. ``may_write`` (the leader's lease held, asked before every
batch) fences the writer the same way, without a write, once the lease term is over.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg

from gpu_router.shim.store import pg_schema
from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.records import Done, DuplicateRequest, JournalError, StoreFenced

logger = logging.getLogger(__name__)

Settled = Callable[[list[tuple[Done, JournalError | None]]], None]


def connect(url: str, connect_timeout_s: float, **kwargs: Any) -> psycopg.Connection[Any]:
    """A connection, with TCP keepalives so that a vanished server is noticed."""
    try:
        return psycopg.connect(
            url,
            connect_timeout=max(1, round(connect_timeout_s)),
            keepalives=1,
            keepalives_idle=5,
            keepalives_interval=2,
            keepalives_count=3,
            application_name="gpu-router",
            **kwargs,
        )
    except psycopg.Error as exc:
        raise JournalError(f"PostgreSQL unreachable: {exc}") from exc


class PgWriter:
    """The writer thread and what it shares with the loop (under one condition)."""

    def __init__(
        self,
        url: str,
        settled: Settled,
        *,
        connect_timeout_s: float = 2.0,
        retry_s: float = 0.5,
        on_lost: Callable[[list[str]], None] | None = None,
    ) -> None:
        self.url = url
        self.settled = settled
        self.connect_timeout_s = connect_timeout_s
        self.retry_s = retry_s
        self.on_lost = on_lost
        #: the leader's lease epoch every batch carries (None: unfenced, one router)
        self.epoch: int | None = None
        self.fenced: str | None = None  # why the database refused this writer's epoch
        self.on_fenced: Callable[[str], None] | None = None
        #: asked before every batch (a leader's ``Leadership.holds``): False, and the
        #: writer is fenced without writing (the lease term is over)
        self.may_write: Callable[[], bool] | None = None
        self._cond = threading.Condition()
        self._queue: list[StagedBatch] = []
        self._kept: dict[str, tuple[Any, ...]] = {}  # state changes of failed commits
        self.handed = 0  # batches handed over ...
        self.durable = 0  # ... and the last of them whose writes are all committed
        self.down: str | None = None  # why the last connection attempt failed, if it did
        self._next_try = 0.0  # (monotonic s) when to try connecting again
        self._closing = False
        self.commits = 0  # transactions committed
        self._conn: psycopg.Connection[Any] | None = None
        self._thread = threading.Thread(target=self._run, name="pg-writer", daemon=True)
        self._thread.start()

    @property
    def alive(self) -> bool:
        """Whether the thread runs and its connection is up."""
        return self._thread.is_alive() and self.down is None and not self._closing

    def hand(self, batch: StagedBatch) -> int:
        """Queue a batch for the next transaction; its number."""
        with self._cond:
            self._queue.append(batch)
            self.handed += 1
            self._cond.notify()
            return self.handed

    def wait(self, number: int, timeout_s: float) -> None:
        """Block until batch ``number`` and those before are durable; raises
        :class:`JournalError` at once while PostgreSQL is unreachable, or after
        ``timeout_s``."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while self.durable < number:
                if self.down is not None:
                    raise JournalError(f"not durable: {self.down}")
                if not self._thread.is_alive():
                    raise JournalError("not durable: the PostgreSQL writer has stopped")
                left = deadline - time.monotonic()
                if left <= 0:
                    raise JournalError(f"not durable after {timeout_s:.1f} s")
                self._cond.wait(left)

    def close(self, timeout_s: float = 5.0) -> None:
        """Commit what is queued (one try if PostgreSQL is down), stop the thread."""
        with self._cond:
            self._closing = True
            self._next_try = 0.0
            self._cond.notify()
        self._thread.join(timeout_s)

    # -- the thread -----------------------------------------------------------------------

    def _take(self) -> tuple[StagedBatch, int, bool] | None:
        """Wait for work; the queued batches (after the kept changes) as one, the number
        of the last one, and whether the writer is closing. None: nothing more to do."""
        with self._cond:
            while True:
                closing = self._closing
                if self._queue or closing:
                    break
                if self.down is not None:  # try connecting again (and write what is kept)
                    left = self._next_try - time.monotonic()
                    if left <= 0:
                        break
                    self._cond.wait(left)
                else:
                    self._cond.wait()
            if closing and not self._queue and not self._kept:
                return None
            merged = StagedBatch([], self._kept)
            self._kept = {}
            for batch in self._queue:
                merged.extend(batch)
            self._queue = []
            return merged, self.handed, closing

    def _run(self) -> None:
        try:
            while (work := self._take()) is not None:
                batch, number, closing = work
                self._write(batch, number, closing)
                if closing:
                    return
        finally:
            if self._conn is not None:
                self._conn.close()

    def _connection(self, closing: bool) -> psycopg.Connection[Any] | None:
        if self._conn is not None and not self._conn.closed:
            return self._conn
        if self.down is not None and time.monotonic() < self._next_try and not closing:
            return None
        try:
            self._conn = connect(self.url, self.connect_timeout_s, autocommit=True)
        except JournalError as exc:
            self._lose_connection(str(exc))
            return None
        if self.down is not None:
            logger.warning("PostgreSQL reachable again; writes resume")
        with self._cond:
            self.down = None
        return self._conn

    def _lose_connection(self, why: str) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
        if self.down is None:
            logger.error("PostgreSQL writes failing: %s", why)
        with self._cond:
            self.down = why
            self._next_try = time.monotonic() + self.retry_s
            self._cond.notify_all()

    def _write(self, batch: StagedBatch, number: int, closing: bool) -> None:
        if self.fenced is None and self.may_write is not None and not self.may_write():
            self._fence("this router's lease term is over")
        if self.fenced is not None:
            self._refused(batch, number, self.fenced)
            return
        conn = self._connection(closing)
        if conn is None:
            self._failed(
                batch, number, JournalError(f"PostgreSQL unreachable: {self.down}"), closing
            )
            return
        taken: dict[int, JournalError] = {}
        if not batch:  # (a reconnection only)
            self._advance(number)
            return
        # the new rows' values are copied: folding changes into them must not change
        # what a failed commit leaves behind
        rows = [list(values) for _rid, values, _done in batch.inserts]
        updates = dict(batch.updates)
        try:
            sql, params = pg_schema.batch_statement(rows, updates, self.epoch)
            cur = conn.execute(sql, params)  # type: ignore[arg-type]
            if rows:
                inserted = {rid for (rid,) in cur.fetchall()}
                for n, (rid, _values, _done) in enumerate(batch.inserts):
                    if rid in inserted:
                        inserted.discard(rid)  # (the first of two with one id wins)
                    else:
                        taken[n] = DuplicateRequest(f"request_id {rid!r} is taken")
        except psycopg.Error as exc:
            if pg_schema.fenced(exc):  # another router leads: nothing was written
                self._fence(str(exc).strip().splitlines()[0])
                self._refused(batch, number, self.fenced or "fenced")
                return
            if isinstance(exc, (psycopg.OperationalError, psycopg.InterfaceError)):
                # the connection (or the server) is gone: whether the commit happened is
                # not known; the state changes are written again once it is back (they
                # are idempotent), the new rows are refused
                self._lose_connection(str(exc).strip() or type(exc).__name__)
                error = JournalError(f"PostgreSQL commit failed: {exc}")
                self._failed(batch, number, error, closing)
                return
            error = JournalError(f"PostgreSQL commit failed: {exc}")
            self._settle(batch, dict.fromkeys(range(len(batch.inserts)), error))
            self._lost(batch.updates, error)
            self._advance(number)
            return
        self.commits += 1
        self._settle(batch, taken)
        self._advance(number)

    def _fence(self, why: str) -> None:
        if self.fenced is None:
            logger.critical("PostgreSQL refused this leader's writes: %s", why)
            self.fenced = why
            if self.on_fenced is not None:
                self.on_fenced(why)

    def _refused(self, batch: StagedBatch, number: int, why: str) -> None:
        """A fenced batch: its new rows fail, its state changes are lost."""
        error = StoreFenced(f"PostgreSQL refused the write: {why}")
        self._settle(batch, dict.fromkeys(range(len(batch.inserts)), error))
        self._lost(batch.updates, error)
        self._advance(number)

    def _failed(self, batch: StagedBatch, number: int, error: JournalError, closing: bool) -> None:
        """New rows refused, state changes kept for the next commit (or lost at close)."""
        self._settle(batch, dict.fromkeys(range(len(batch.inserts)), error))
        if closing:
            self._lost(batch.updates, error)
            self._advance(number)
            return
        with self._cond:
            self._kept.update(batch.updates)  # (a change handed over since is queued after)
            if not self._kept:  # nothing of it is left to write: refused is settled
                self.durable = max(self.durable, number)
                self._cond.notify_all()

    def _settle(self, batch: StagedBatch, errors: dict[int, JournalError]) -> None:
        fates = [
            (done, errors.get(n))
            for n, (_rid, _values, done) in enumerate(batch.inserts)
            if done is not None
        ]
        if fates:
            self.settled(fates)

    def _lost(self, updates: dict[str, tuple[Any, ...]], error: JournalError) -> None:
        if updates and self.on_lost is not None:
            self.on_lost([f"update of {rid!r} lost: {error}" for rid in updates])

    def _advance(self, number: int) -> None:
        with self._cond:
            self.durable = max(self.durable, number)
            self._cond.notify_all()
