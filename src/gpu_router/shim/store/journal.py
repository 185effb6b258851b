"""The request journal: SQLite (WAL mode by default), the service's only durable state.

A request is durable here before the client hears 200 (committed, or in the intake log
that ``shim.store.group_commit`` keeps in front of it, ``shim.store.intake_log``);
every later change of state is written as it happens. After a crash the service reads back the
requests that are not terminal and resumes them; terminal ones are never run again, and
their results stay readable behind ``result_url``.

``insert``/``update`` commit at once (autocommit); the staged writes of group commit and
their batched, multi-row commit are in ``journal_batch`` (run by ``group_commit`` in a
writer process, ``journal_process``, or on a writer thread), the schema and the
record/row conversions in ``journal_rows``. A read of a request with staged writes, and
every read of many requests, first has the staged writes committed (through
``before_read`` when a writer owns them), so reads see what was written. Every use of
the connection holds the journal's lock.

Checkpoints (copying the WAL into the database file, with an fsync or two) do not run on
the writer's thread, where SQLite would run one every thousand pages and stall the event
loop for milliseconds: a background thread with its own connection runs a passive
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
from gpu_router.shim.store.batch import StagedBatch, StagedWrites
from gpu_router.shim.store.rows import (
    COLUMN_SET,
    COLUMNS,
    JSON_COLUMNS,
    MUTABLE,
    SCHEMA,
    TERMINAL,
    Done,
    DuplicateRequest,
    JournalError,
    JournalRecord,
    record_from_row,
    row_values,
)

__all__ = [
    "TERMINAL",
    "Done",
    "DuplicateRequest",
    "Journal",
    "JournalError",
    "JournalRecord",
    "StagedBatch",
]


class Journal(StagedWrites):
    """The journal file: direct writes, reads, admin settings, background checkpoints."""

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
        self._lock = threading.RLock()  # a writer thread and the event loop may share _db
        if wal and self.path != ":memory:":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: could not switch to WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        # the writer that starts the WAL over cuts the file back to this size
        self._db.execute(f"PRAGMA journal_size_limit={self.WAL_RESTART_BYTES}")
        self._db.executescript(SCHEMA)
        self._stop = threading.Event()
        self._restart_due = False  # set by the checkpointer, done by the next commit_batch
        self._checkpointer: threading.Thread | None = None
        if checkpoint_interval_s:
            self.start_checkpoints(checkpoint_interval_s)
        self._insert_sql = (
            f"INSERT INTO requests ({', '.join(COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in COLUMNS)})"
        )
        self._update_sql = (
            f"UPDATE requests SET {', '.join(f'{c} = ?' for c in MUTABLE)} WHERE request_id = ?"
        )
        self._insert_many: dict[int, str] = {}
        self._update_many: dict[int, str] = {}
        #: called before a read with the request_id read (None: many) while a writer
        #: thread holds staged writes (``shim.store.group_commit`` sets it)
        self.before_read: Callable[[str | None], None] | None = None
        self._inserts: list[tuple[JournalRecord, Done | None, list[Any] | None]] = []
        self._insert_ids: set[str] = set()
        self._dirty: dict[str, JournalRecord] = {}  # staged updates: rows to rewrite
        #: told the messages of staged updates that could not be committed
        self.on_lost: Callable[[list[str]], None] | None = None
        self.batches = 0  # transactions committed by commit_batch (for tests and metrics)

    def start_checkpoints(self, interval_s: float) -> None:
        """Run checkpoints on a background thread from now on (a WAL journal file only;
        once). The writer's connection then leaves them to it."""
        if not self.wal or self.path == ":memory:" or self._checkpointer is not None:
            return
        with self._lock:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
        self._checkpointer = threading.Thread(
            target=self._checkpoints, args=(interval_s,), name="journal-checkpoint", daemon=True
        )
        self._checkpointer.start()

    def close(self) -> None:
        self.commit_staged()
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

    def insert(self, record: JournalRecord) -> None:
        """Commit a new request; raises :class:`JournalError` (id taken, disk full, ...)."""
        try:
            with self._lock:
                self._db.execute(self._insert_sql, row_values(record))
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
            with self._lock:
                self._db.execute(
                    f"UPDATE requests SET {cols} WHERE request_id = ?", (*vals, request_id)
                )
        except sqlite3.Error as exc:
            raise JournalError(f"journal update of {request_id!r} failed: {exc}") from exc

    def _select(self, where: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._lock:
            return self._db.execute(
                f"SELECT {', '.join(COLUMNS)} FROM requests {where}", params
            ).fetchall()

    def stored_ids(self, request_ids: list[str]) -> dict[str, tuple[float, str]]:
        """``(submitted_at, body_hash)`` of those of ``request_ids`` that have a row (no
        staged writes are waited for: this asks what is committed)."""
        out: dict[str, tuple[float, str]] = {}
        for at in range(0, len(request_ids), 500):
            part = request_ids[at : at + 500]
            with self._lock:
                rows = self._db.execute(
                    "SELECT request_id, submitted_at, body_hash FROM requests WHERE request_id "
                    f"IN ({', '.join('?' for _ in part)})",
                    part,
                ).fetchall()
            out.update((rid, (at_s, digest)) for rid, at_s, digest in rows)
        return out

    def request_ids(self) -> Iterator[str]:
        """Every request_id with a row (committed ones: staged writes are not waited for)."""
        with self._lock:
            rows = self._db.execute("SELECT request_id FROM requests").fetchall()
        for (rid,) in rows:
            yield rid

    def get(self, request_id: str) -> JournalRecord | None:
        self._settle(request_id)
        rows = self._select("WHERE request_id = ?", (request_id,))
        return record_from_row(rows[0]) if rows else None

    def unfinished(self) -> list[JournalRecord]:
        """Requests not yet terminal, in submission order."""
        self._settle()
        marks = ", ".join("?" for _ in TERMINAL)
        rows = self._select(f"WHERE state NOT IN ({marks}) ORDER BY rowid", TERMINAL)
        return [record_from_row(r) for r in rows]

    def pending_callbacks(self) -> list[JournalRecord]:
        """Terminal requests whose callback has not been delivered or given up on."""
        self._settle()
        rows = self._select("WHERE callback_state = 'pending' ORDER BY rowid")
        return [record_from_row(r) for r in rows]

    def since(self, wall_ts: float) -> Iterator[JournalRecord]:
        """Requests submitted at or after ``wall_ts`` (to rebuild quota usage on restart)."""
        self._settle()
        for row in self._select("WHERE submitted_at >= ? ORDER BY rowid", (wall_ts,)):
            yield record_from_row(row)

    def count_by_state(self) -> dict[str, int]:
        self._settle()
        with self._lock:
            return dict(
                self._db.execute("SELECT state, COUNT(*) FROM requests GROUP BY state").fetchall()
            )

    def set_setting(self, key: str, value: Any) -> None:
        """Persist an admin setting (None deletes it)."""
        try:
            with self._lock:
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
        with self._lock:
            rows = self._db.execute("SELECT key, value FROM settings").fetchall()
        return {k: json.loads(v) for k, v in rows}
