"""The SQLite journal: one connection to the journal file (WAL mode by default), the
request rows and admin settings; what :class:`~.sqlite_store.SqliteStore` keeps its
state in.

``insert``/``update`` commit at once (autocommit); :meth:`Journal.commit_batch` commits
a group commit's batch (``shim.store.batch``) in one transaction with multi-row statements
(``shim.store.statements``), in the writer process (``shim.store.writer_process``) or on
the event loop. Reads here read what is committed: the store commits its staged writes
before a read that may concern them. The schema and the record/row conversions are in
``shim.store.rows``. One thread uses the connection (the event loop's, or the writer
process's only one); the checkpointer has a connection of its own.

Checkpoints (copying the WAL into the database file, with an fsync or two) do not run on
the writer's connection, where SQLite would run one every thousand pages and stall the
commit for milliseconds: a background thread with its own connection runs a passive
checkpoint every ``checkpoint_interval_s``, which never blocks the writer, and has the
writer start the WAL over once it is past ``WAL_RESTART_BYTES`` (see ``_checkpoints``).

``synchronous=NORMAL`` in WAL mode survives the death of the process (SIGKILL) without an
fsync per commit: a committed transaction is in the WAL file, which the next open
replays. It does not survive a power loss or an OS crash (the last commits may be lost):
``FULL`` survives those too, at the cost of one fsync per commit (per batch, with group
commit).

Wall-clock times (epoch seconds) are stored; they are what the API reports.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from gpu_router.shim import fastjson
from gpu_router.shim.store.batch import StagedBatch
from gpu_router.shim.store.records import (
    TERMINAL,
    Done,
    DuplicateRequest,
    JournalError,
    JournalRecord,
)
from gpu_router.shim.store.rows import (
    COLUMN_SET,
    COLUMNS,
    JSON_COLUMNS,
    SCHEMA,
    record_from_row,
    row_values,
)
from gpu_router.shim.store.statements import INSERT_ONE, BatchStatements


class Journal:
    """The journal file: direct writes, batched commits, reads, admin settings,
    background checkpoints."""

    def __init__(
        self,
        path: str | Path,
        *,
        wal: bool = True,
        synchronous: str = "NORMAL",
        checkpoint_interval_s: float | None = 1.0,
    ) -> None:
        self.path = str(path)
        self.wal, self.synchronous = wal, synchronous  # a writer process opens it alike
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if wal and self.path != ":memory:":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: could not switch to WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # the writer that starts the WAL over cuts the file back to this size
        self._db.execute(f"PRAGMA journal_size_limit={self.WAL_RESTART_BYTES}")
        self._db.executescript(SCHEMA)
        self._scope_request_ids()
        self._stop = threading.Event()
        self._restart_due = False  # set by the checkpointer, done by the next commit_batch
        self._checkpointer: threading.Thread | None = None
        if checkpoint_interval_s:
            self.start_checkpoints(checkpoint_interval_s)
        self._statements = BatchStatements()
        #: told the messages of a batch's updates that could not be committed
        self.on_lost: Callable[[list[str]], None] | None = None
        self.batches = 0  # transactions committed by commit_batch (for tests and metrics)

    def start_checkpoints(self, interval_s: float) -> None:
        """Run checkpoints on a background thread from now on (a WAL journal file only;
        once). The writer's connection then leaves them to it."""
        if not self.wal or self.path == ":memory:" or self._checkpointer is not None:
            return
        self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(
            target=self._checkpoints, args=(interval_s,), name="journal-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def close(self) -> None:
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join()
        self._db.close()  # the last connection to close checkpoints what is left

    #: WAL size (bytes) past which a checkpoint also restarts the WAL, and the size SQLite
    #: truncates it to then
    WAL_RESTART_BYTES = 32 << 20

    def _checkpoints(self, interval_s: float) -> None:
        """Passive checkpoints from a connection of this thread (they never block the
        writer); once the WAL is past ``WAL_RESTART_BYTES``, a WAL restart is asked of the
        writer (``_restart_due``).

        Under steady writes a passive checkpoint never catches up with the end of the WAL,
        and SQLite starts the WAL over only after a checkpoint has caught up: the file
        would grow without end (measured: over 100 MB in 30 s at 1,000 requests/s). The
        writer runs the RESTART checkpoint itself, on its own connection before its next
        transaction: the passive one has copied nearly everything, so it copies what is
        left with nothing to wait for (from another connection it would wait in SQLite's
        busy handler, which sleeps in steps of up to 25 ms)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        wal = Path(self.path + "-wal")
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(interval_s):
                with contextlib.suppress(sqlite3.Error):  # busy now: next time
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                with contextlib.suppress(OSError):
                    if wal.stat().st_size > self.WAL_RESTART_BYTES:
                        self._restart_due = True
        finally:
            db.close()

    _record = staticmethod(record_from_row)  # a row read back as a record

    #: ``PRAGMA user_version`` of a journal whose keys are per user (``records.request_key``)
    SCHEMA_VERSION = 1

    def _scope_request_ids(self) -> None:
        """Migrate a journal from before per-user request ids (``user_version`` 0): each
        key without ``/`` (a bare request_id) becomes ``<request_id>/<user_id>``
        (``records.request_key``), in one transaction with the version bump, so a crash
        leaves it done or not; ``migrated`` says whether this open did it (the intake
        log's rows are then rewritten alike when replayed)."""
        self.migrated = False
        try:
            if self._db.execute("PRAGMA user_version").fetchone()[0] >= self.SCHEMA_VERSION:
                return
            self._db.execute("BEGIN IMMEDIATE")
            cur = self._db.execute(
                "UPDATE requests SET request_id = request_id || '/' || user_id "
                "WHERE instr(request_id, '/') = 0"
            )
            self._db.execute(f"PRAGMA user_version = {self.SCHEMA_VERSION}")
            self._db.execute("COMMIT")
            self.migrated = cur.rowcount > 0
        except sqlite3.Error as exc:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise JournalError(f"{self.path}: migration to per-user request ids: {exc}") from exc

    def insert(self, record: JournalRecord) -> None:
        """Commit a new request; raises :class:`JournalError` (id taken, disk full, ...)."""
        try:
            self._db.execute(INSERT_ONE, row_values(record))
        except sqlite3.IntegrityError as exc:
            raise DuplicateRequest(f"request_id {record.request_id!r} is taken: {exc}") from exc
        except sqlite3.Error as exc:
            raise JournalError(f"journal insert of {record.request_id!r} failed: {exc}") from exc

    def update(self, request_id: str, **changes: Any) -> None:
        """Commit changed columns of one request."""
        if not changes:
            return
        bad = set(changes) - COLUMN_SET
        if bad:
            raise KeyError(f"unknown journal columns {sorted(bad)}")
        cols = ", ".join(f"{c} = ?" for c in changes)
        vals = [
            fastjson.dumps(v) if c in JSON_COLUMNS and v is not None else v
            for c, v in changes.items()
        ]
        try:
            self._db.execute(
                f"UPDATE requests SET {cols} WHERE request_id = ?", (*vals, request_id)
            )
        except sqlite3.Error as exc:
            raise JournalError(f"journal update of {request_id!r} failed: {exc}") from exc

    def _select(self, where: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._db.execute(
            f"SELECT {', '.join(COLUMNS)} FROM requests {where}", params
        ).fetchall()

    def stored_ids(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        """``(submitted_at, body_hash)`` of those of ``request_ids`` that have a row."""
        out: dict[str, tuple[float, str]] = {}
        for at in range(0, len(request_ids), 500):
            part = request_ids[at : at + 500]
            rows = self._db.execute(
                "SELECT request_id, submitted_at, body_hash FROM requests WHERE request_id "
                f"IN ({', '.join('?' for _ in part)})",
                part,
            ).fetchall()
            out.update((rid, (at_s, digest)) for rid, at_s, digest in rows)
        return out

    def request_ids(self) -> Iterator[str]:
        """Every request_id with a row."""
        rows = self._db.execute("SELECT request_id FROM requests").fetchall()
        for (rid,) in rows:
            yield rid

    def get(self, request_id: str) -> JournalRecord | None:
        rows = self._select("WHERE request_id = ?", (request_id,))
        return record_from_row(rows[0]) if rows else None

    def latest(self, client_request_id: str) -> JournalRecord | None:
        """The last submitted request, of any user, whose request_id is
        ``client_request_id`` (the keys ``<id>/<user>`` are a range of the primary key:
        ``/`` sorts just before ``0``)."""
        rows = self._select(
            "WHERE request_id >= ? AND request_id < ? ORDER BY rowid DESC LIMIT 1",
            (client_request_id + "/", client_request_id + "0"),
        )
        return record_from_row(rows[0]) if rows else None

    def unfinished(self) -> list[JournalRecord]:
        """Requests not yet terminal, in submission order."""
        marks = ", ".join("?" for _ in TERMINAL)
        rows = self._select(f"WHERE state NOT IN ({marks}) ORDER BY rowid", TERMINAL)
        return [record_from_row(r) for r in rows]

    def pending_callbacks(self) -> list[JournalRecord]:
        """Terminal requests whose callback has not been delivered or given up on."""
        rows = self._select("WHERE callback_state = 'pending' ORDER BY rowid")
        return [record_from_row(r) for r in rows]

    def since(self, wall_ts: float) -> Iterator[JournalRecord]:
        """Requests submitted at or after ``wall_ts`` (to rebuild quota usage on restart)."""
        for row in self._select("WHERE submitted_at >= ? ORDER BY rowid", (wall_ts,)):
            yield record_from_row(row)

    def count_by_state(self) -> dict[str, int]:
        return dict(
            self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
        )

    def set_setting(self, key: str, value: Any) -> None:
        """Persist an admin setting (None deletes it)."""
        try:
            if value is None:
                self._db.execute("DELETE FROM settings WHERE key = ?", (key,))
            else:
                self._db.execute(
                    "INSERT INTO settings (key, value) VALUES (?, ?) "
                    "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                    (key, json.dumps(value)),
                )
        except sqlite3.Error as exc:
            raise JournalError(f"journal setting {key!r} failed: {exc}") from exc

    def settings(self) -> dict[str, Any]:
        rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        return {k: json.loads(v) for k, v in rows}

    def commit_batch(self, batch: StagedBatch) -> list[tuple[Done, JournalError | None]]:
        """Write ``batch`` in one transaction and commit it. Never raises for SQLite's
        errors: returns each staged insert's ``done`` with its fate (None: committed;
        :class:`DuplicateRequest` when the id is taken, and then that request's updates
        in the batch are dropped); lost updates go to ``on_lost``."""
        if not batch:
            return []
        updates = batch.updates
        failed: dict[int, JournalError] = {}
        batch_error: JournalError | None = None
        if self._restart_due:  # the WAL is large: start it over (see _checkpoints)
            self._restart_due = False
            self._restart_wal()
        try:
            self._db.execute("BEGIN")
            failed = self._statements.insert_rows(self._db, batch.inserts)
            for n in failed:
                updates.pop(batch.inserts[n][0], None)
            self._statements.update_rows(self._db, list(updates.values()))
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
