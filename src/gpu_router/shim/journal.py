"""The request journal: SQLite (WAL mode by default), the service's only durable state.

A request is written here, and the write committed, before the client hears 200; every
later change of state is written as it happens. After a crash the service reads back the
requests that are not terminal and resumes them; terminal ones are never run again, and
their results stay readable behind ``result_url``.

Group commit: ``insert``/``update`` commit at once (autocommit), while ``stage_insert``/
``stage_update`` only queue the write. :meth:`Journal.take_staged` turns what is queued
into a :class:`StagedBatch` of row values (built on the caller's thread, so the rows are a
consistent snapshot of the records), and :meth:`Journal.commit_batch` writes a batch in one
transaction with multi-row statements (a handful of SQLite calls per batch, not one per
row) on whatever thread calls it; ``commit_staged`` does both at once.
``shim.group_commit`` runs ``commit_batch`` on a writer thread. A staged update rewrites
the changing columns from the record object, which the service keeps current, so several
changes of one request between two batches cost one row write. A read of a request with
staged writes, and every read of many requests, first has the staged writes committed
(through ``before_read`` when a writer thread owns them), so reads see what was written.
Every use of the connection holds the journal's lock.

Checkpoints (copying the WAL into the database file, with an fsync or two) do not run on
the writer's thread, where SQLite would run one every thousand pages and stall the event
loop for milliseconds: a background thread with its own connection runs a passive
checkpoint every ``checkpoint_interval_s``, which never blocks the writer.

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
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from . import fastjson

TERMINAL = ("completed", "failed", "cancelled")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    request_id      TEXT PRIMARY KEY,
    user_id         TEXT NOT NULL,
    model_id        TEXT NOT NULL,
    priority        INTEGER NOT NULL,
    body            TEXT NOT NULL,
    body_hash       TEXT NOT NULL,
    answer          TEXT NOT NULL,
    state           TEXT NOT NULL,
    gpu_id          TEXT,
    job_id          TEXT,
    attempts        INTEGER NOT NULL DEFAULT 0,
    submitted_at    REAL NOT NULL,
    start_time      REAL,
    completion_time REAL,
    result          TEXT,
    error           TEXT,
    callback_url    TEXT,
    callback_state  TEXT,
    trace_id        TEXT
);
-- no index on state or user: no hot query uses one, and every write would maintain it
-- (state changes two or three times per request); journals made before drop them
DROP INDEX IF EXISTS requests_state;
DROP INDEX IF EXISTS requests_user;
CREATE INDEX IF NOT EXISTS requests_submitted ON requests(submitted_at);
CREATE TABLE IF NOT EXISTS settings (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""


@dataclass(slots=True)
class JournalRecord:
    """One row. ``body`` is the validated submission (a JSON object), ``answer`` the data
    of the first 200 answer (replayed to an identical re-submission)."""

    request_id: str
    user_id: str
    model_id: str
    priority: int
    body: dict[str, Any]
    body_hash: str
    answer: dict[str, Any]
    state: str
    submitted_at: float
    gpu_id: str | None = None
    job_id: str | None = None
    attempts: int = 0
    start_time: float | None = None
    completion_time: float | None = None
    result: Any = None
    error: str | None = None
    callback_url: str | None = None
    callback_state: str | None = None  # None, "pending", "delivered", "failed"
    trace_id: str | None = None
    body_json: str | None = None  # not a column: ``body`` already encoded (saves a dumps)

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL


_JSON_COLUMNS = ("body", "answer", "result")
_COLUMNS = [f.name for f in fields(JournalRecord) if f.name != "body_json"]
_COLUMN_SET = frozenset(_COLUMNS)
#: what changes after the insert (rewritten from the record by a staged update)
_MUTABLE = (
    "state",
    "gpu_id",
    "job_id",
    "attempts",
    "start_time",
    "completion_time",
    "result",
    "error",
    "callback_state",
)


class JournalError(Exception):
    """The journal could not be written: the request must not be acknowledged."""


class DuplicateRequest(JournalError):
    """A staged insert found its request_id taken (by a request no longer in memory)."""


#: told ``None`` once a staged insert is committed, or the error that lost it
Done = Callable[[JournalError | None], None]

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


class Journal:
    def __init__(
        self,
        path: str | Path,
        *,
        wal: bool = True,
        synchronous: str = "NORMAL",
        checkpoint_interval_s: float | None = 1.0,
    ) -> None:
        self.path = str(path)
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._lock = threading.RLock()  # the writer thread and the event loop share _db
        if wal and self.path != ":memory:":
            mode = self._db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise JournalError(f"{self.path}: could not switch to WAL mode (got {mode})")
        self._db.execute(f"PRAGMA synchronous={synchronous}")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        self._stop = threading.Event()
        self._checkpointer: threading.Thread | None = None
        if wal and self.path != ":memory:" and checkpoint_interval_s:
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._checkpointer = threading.Thread(
                target=self._checkpoints,
                args=(checkpoint_interval_s,),
                name="journal-checkpoint",
                daemon=True,
            )
            self._checkpointer.start()
        self._insert_sql = (
            f"INSERT INTO requests ({', '.join(_COLUMNS)}) "
            f"VALUES ({', '.join('?' for _ in _COLUMNS)})"
        )
        self._update_sql = (
            f"UPDATE requests SET {', '.join(f'{c} = ?' for c in _MUTABLE)} WHERE request_id = ?"
        )
        self._insert_many: dict[int, str] = {}
        self._update_many: dict[int, str] = {}
        #: called before a read with the request_id read (None: many) while a writer
        #: thread holds staged writes (``shim.group_commit`` sets it)
        self.before_read: Callable[[str | None], None] | None = None
        self._inserts: list[tuple[JournalRecord, Done | None]] = []  # staged, in order
        self._insert_ids: set[str] = set()
        self._dirty: dict[str, JournalRecord] = {}  # staged updates: rows to rewrite
        #: told the messages of staged updates that could not be committed
        self.on_lost: Callable[[list[str]], None] | None = None
        self.batches = 0  # transactions committed by commit_staged (for tests and metrics)

    def close(self) -> None:
        self.commit_staged()
        if self._checkpointer is not None:
            self._stop.set()
            self._checkpointer.join()
        self._db.close()  # the last connection to close checkpoints what is left

    def _checkpoints(self, interval_s: float) -> None:
        """Passive checkpoints from a connection of this thread (never blocks the writer)."""
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            db.execute("PRAGMA busy_timeout=5000")
            while not self._stop.wait(interval_s):
                with contextlib.suppress(sqlite3.Error):  # busy now: next time
                    db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        finally:
            db.close()

    # -- group commit ------------------------------------------------------------------

    @property
    def staged(self) -> int:
        """Rows staged and not committed yet."""
        return len(self._inserts) + len(self._dirty)

    def stage_insert(self, record: JournalRecord, done: Done | None = None) -> None:
        """Queue a new request for the next :meth:`commit_staged`. The row is built from
        ``record`` at commit time, so changes made to it meanwhile are in it."""
        self._inserts.append((record, done))
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
        for record, done in inserts:
            rid = record.request_id
            if dirty.get(rid) is record:
                del dirty[rid]
            rows.append((rid, self._row(record), done))
        return StagedBatch(rows, {rid: self._mutable_row(r) for rid, r in dirty.items()})

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
                one = f"({', '.join('?' for _ in _COLUMNS)})"
                sql = self._insert_many[size] = (
                    f"INSERT INTO requests ({', '.join(_COLUMNS)}) VALUES "
                    + ", ".join([one] * size)
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
                one = f"({', '.join('?' for _ in range(len(_MUTABLE) + 1))})"
                sets = ", ".join(f"{c} = v.column{i}" for i, c in enumerate(_MUTABLE, 1))
                sql = self._update_many[size] = (
                    f"UPDATE requests SET {sets} FROM (VALUES {', '.join([one] * size)}) AS v "
                    f"WHERE requests.request_id = v.column{len(_MUTABLE) + 1}"
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

    @staticmethod
    def _mutable_row(record: JournalRecord) -> tuple[Any, ...]:
        result = record.result
        return (
            record.state,
            record.gpu_id,
            record.job_id,
            record.attempts,
            record.start_time,
            record.completion_time,
            None if result is None else fastjson.dumps(result),
            record.error,
            record.callback_state,
            record.request_id,
        )

    @staticmethod
    def _row(record: JournalRecord) -> list[Any]:
        out = []
        for col in _COLUMNS:  # getattr, not asdict: asdict deep-copies the payload
            value = getattr(record, col)
            if col == "body" and record.body_json is not None:
                value = record.body_json
            elif col in _JSON_COLUMNS and value is not None:
                value = fastjson.dumps(value)
            out.append(value)
        return out

    @staticmethod
    def _record(row: tuple[Any, ...]) -> JournalRecord:
        values = dict(zip(_COLUMNS, row, strict=True))
        for col in _JSON_COLUMNS:
            if values[col] is not None:
                values[col] = json.loads(values[col])
        return JournalRecord(**values)

    def insert(self, record: JournalRecord) -> None:
        """Commit a new request; raises :class:`JournalError` (id taken, disk full, ...)."""
        try:
            with self._lock:
                self._db.execute(self._insert_sql, self._row(record))
        except sqlite3.IntegrityError as exc:
            raise DuplicateRequest(f"request_id {record.request_id!r} is taken: {exc}") from exc
        except sqlite3.Error as exc:
            raise JournalError(f"journal insert of {record.request_id!r} failed: {exc}") from exc

    def update(self, request_id: str, **changes: Any) -> None:
        """Commit changed columns of one request."""
        if not changes:
            return
        bad = set(changes) - _COLUMN_SET
        if bad:
            raise KeyError(f"unknown journal columns {sorted(bad)}")
        cols = ", ".join(f"{c} = ?" for c in changes)
        vals = [
            fastjson.dumps(v) if c in _JSON_COLUMNS and v is not None else v
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
                f"SELECT {', '.join(_COLUMNS)} FROM requests {where}", params
            ).fetchall()

    def get(self, request_id: str) -> JournalRecord | None:
        self._settle(request_id)
        rows = self._select("WHERE request_id = ?", (request_id,))
        return self._record(rows[0]) if rows else None

    def unfinished(self) -> list[JournalRecord]:
        """Requests not yet terminal, in submission order."""
        self._settle()
        marks = ", ".join("?" for _ in TERMINAL)
        rows = self._select(f"WHERE state NOT IN ({marks}) ORDER BY rowid", TERMINAL)
        return [self._record(r) for r in rows]

    def pending_callbacks(self) -> list[JournalRecord]:
        """Terminal requests whose callback has not been delivered or given up on."""
        self._settle()
        rows = self._select("WHERE callback_state = 'pending' ORDER BY rowid")
        return [self._record(r) for r in rows]

    def since(self, wall_ts: float) -> Iterator[JournalRecord]:
        """Requests submitted at or after ``wall_ts`` (to rebuild quota usage on restart)."""
        self._settle()
        for row in self._select("WHERE submitted_at >= ? ORDER BY rowid", (wall_ts,)):
            yield self._record(row)

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
