"""Staged journal writes and their batched commit (group commit's storage side).

``stage_insert``/``stage_update`` only queue a write. :meth:`StagedWrites.take_staged`
turns what is queued into a :class:`StagedBatch` of row values (built on the caller's
thread, so the rows are a consistent snapshot of the records), and
:meth:`StagedWrites.commit_batch` writes a batch in one transaction with multi-row
statements (a handful of SQLite calls per batch, not one per row) on whatever thread calls
it; ``commit_staged`` does both at once. ``shim.store.group_commit`` runs ``commit_batch`` in a
writer process (``shim.store.writer_process``) or on a writer thread. A staged update rewrites
the changing columns from the record object, which the service keeps current, so several
changes of one request between two batches cost one row write.
"""

from __future__ import annotations

import contextlib
import sqlite3
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from gpu_router.shim.store.rows import (
    COLUMNS,
    MUTABLE,
    Done,
    DuplicateRequest,
    JournalError,
    JournalRecord,
    mutable_row,
    row_values,
)

#: rows per multi-row statement: the chunks of a batch are powers of two up to this, so a
#: dozen statement texts (prepared once, then cached by sqlite3) cover every batch size
_CHUNK = 256


@dataclass(slots=True)
class StagedBatch:
    """Staged writes as row values: new rows ``(request_id, values, done)`` in staging
    order, and the changing columns of updated rows by request_id."""

    inserts: list[tuple[str, list[Any], Done | None]]
    updates: dict[str, tuple[Any, ...]]

    def __len__(self) -> int:
        return len(self.inserts) + len(self.updates)

    def extend(self, later: StagedBatch) -> None:
        """Append a later batch (its updates supersede this one's)."""
        self.inserts.extend(later.inserts)
        self.updates.update(later.updates)


def _chunks(n: int) -> list[int]:
    """``n`` as a sum of powers of two, none above ``_CHUNK`` (largest first)."""
    rest = n % _CHUNK
    bits = [1 << b for b in range(rest.bit_length() - 1, -1, -1) if rest >> b & 1]
    return [_CHUNK] * (n // _CHUNK) + bits


class StagedWrites:
    """The staging and batched commit of a :class:`~.journal.Journal` (a mixin: the
    journal owns the connection ``_db``, its ``_lock`` and the statements)."""

    _db: sqlite3.Connection
    _lock: threading.RLock
    _insert_sql: str
    _inserts: list[tuple[JournalRecord, Done | None, list[Any] | None]]
    _insert_ids: set[str]
    _dirty: dict[str, JournalRecord]
    _insert_many: dict[int, str]
    _update_many: dict[int, str]
    _restart_due: bool
    before_read: Callable[[str | None], None] | None
    on_lost: Callable[[list[str]], None] | None
    batches: int

    @property
    def staged(self) -> int:
        """Rows staged and not committed yet."""
        return len(self._inserts) + len(self._dirty)

    def stage_insert(
        self, record: JournalRecord, done: Done | None = None, values: list[Any] | None = None
    ) -> None:
        """Queue a new request for the next batch. Its row is built from ``record`` when the
        batch is taken (:meth:`take_staged`), so changes made to it meanwhile are in it;
        or it is ``values``, built already, and such changes go as an update after it."""
        self._inserts.append((record, done, values))
        self._insert_ids.add(record.request_id)

    def stage_update(self, record: JournalRecord) -> None:
        """Queue a rewrite of the row's changing columns (state, gpu_id, job_id, attempts,
        times, result, error, callback_state) from ``record`` at the next commit: the
        record is the truth, and any number of changes to it cost one row write."""
        self._dirty[record.request_id] = record

    def take_staged(self) -> StagedBatch:
        """Everything staged, as row values built now; the staging is emptied. A record
        both inserted and updated is written once, by its insert (which has its latest
        state)."""
        inserts, dirty = self._inserts, self._dirty
        self._inserts, self._dirty = [], {}
        self._insert_ids.clear()
        rows = []
        for record, done, values in inserts:
            rid = record.request_id
            if values is None:
                if dirty.get(rid) is record:
                    del dirty[rid]
                values = row_values(record)
            rows.append((rid, values, done))
        return StagedBatch(rows, {rid: mutable_row(r) for rid, r in dirty.items()})

    def commit_staged(self) -> None:
        """Write every staged row in one transaction and commit it (on this thread)."""
        if self._inserts or self._dirty:
            for done, fate in self.commit_batch(self.take_staged()):
                done(fate)

    def commit_batch(self, batch: StagedBatch) -> list[tuple[Done, JournalError | None]]:
        """Write ``batch`` in one transaction and commit it. Never raises: returns each
        staged insert's ``done`` with its fate (None: committed; :class:`DuplicateRequest`
        when the id is taken, and then that request's updates in the batch are dropped);
        lost updates go to ``on_lost``. Any thread may call it."""
        if not batch:
            return []
        updates = batch.updates
        failed: dict[int, JournalError] = {}
        batch_error: JournalError | None = None
        with self._lock:
            if self._restart_due:  # the WAL is large: start it over (see Journal)
                self._restart_due = False
                self._restart_wal()
            try:
                self._db.execute("BEGIN")
                failed = self._insert_rows(batch.inserts)
                for n in failed:
                    updates.pop(batch.inserts[n][0], None)
                self._update_rows(list(updates.values()))
                self._db.execute("COMMIT")
                self.batches += 1
            except (sqlite3.Error, JournalError) as exc:
                batch_error = (
                    exc if isinstance(exc, JournalError) else JournalError(f"journal commit: {exc}")
                )
                if self._db.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        self._db.execute("ROLLBACK")
        if batch_error is not None and updates and self.on_lost is not None:
            self.on_lost([f"update of {rid!r} lost: {batch_error}" for rid in updates])
        return [
            (done, batch_error or failed.get(n))
            for n, (_rid, _row, done) in enumerate(batch.inserts)
            if done is not None
        ]

    def _restart_wal(self) -> None:
        """A RESTART checkpoint that does not wait: if a reader of another connection
        still uses the WAL, it gives up at once (SQLite would otherwise retry for the
        whole busy timeout, holding every commit back); the checkpointer asks again."""
        with contextlib.suppress(sqlite3.Error):
            self._db.execute("PRAGMA busy_timeout=0")
            try:
                self._db.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            finally:
                self._db.execute("PRAGMA busy_timeout=5000")

    def _insert_rows(
        self, rows: list[tuple[str, list[Any], Done | None]]
    ) -> dict[int, JournalError]:
        """Insert in multi-row statements; a chunk with a taken id is retried row by row
        (a failed statement undoes only itself). Returns the failed rows by position."""
        failed: dict[int, JournalError] = {}
        at = 0
        for size in _chunks(len(rows)):
            chunk = rows[at : at + size]
            sql = self._insert_many.get(size)
            if sql is None:
                one = f"({', '.join('?' for _ in COLUMNS)})"
                sql = self._insert_many[size] = (
                    f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES " + ", ".join([one] * size)
                )
            try:
                self._db.execute(sql, [v for _rid, values, _done in chunk for v in values])
            except sqlite3.IntegrityError:
                if not self._db.in_transaction:  # pragma: no cover - SQLite rolled back all
                    raise
                for n, (rid, values, _done) in enumerate(chunk, at):
                    try:
                        self._db.execute(self._insert_sql, values)
                    except sqlite3.IntegrityError as exc:
                        failed[n] = DuplicateRequest(f"request_id {rid!r} is taken: {exc}")
            at += size
        return failed

    def _update_rows(self, rows: list[tuple[Any, ...]]) -> None:
        """Rewrite the changing columns of many rows, a multi-row UPDATE ... FROM VALUES
        per chunk."""
        at = 0
        for size in _chunks(len(rows)):
            sql = self._update_many.get(size)
            if sql is None:
                one = f"({', '.join('?' for _ in range(len(MUTABLE) + 1))})"
                sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(MUTABLE, 1))
                sql = self._update_many[size] = (
                    f"UPDATE requests SET {sets} FROM (VALUES {', '.join([one] * size)}) AS v "
                    f"WHERE requests.request_id = v.column{len(MUTABLE) + 1}"
                )
            self._db.execute(sql, [v for row in rows[at : at + size] for v in row])
            at += size

    def _settle(self, request_id: str | None = None) -> None:
        """Commit staged writes before a read that may concern them."""
        if self.before_read is not None:
            self.before_read(request_id)
        elif request_id is None:
            if self._inserts or self._dirty:
                self.commit_staged()
        elif request_id in self._dirty or request_id in self._insert_ids:
            self.commit_staged()
